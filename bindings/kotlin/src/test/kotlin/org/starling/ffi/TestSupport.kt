package org.starling.ffi

import kotlinx.coroutines.delay
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import java.nio.file.Path

/** Key provider whose behaviour a test can switch. */
class SwitchableKeys(
    private val key: ByteArray = generateAtRestKey(),
) : AtRestKeyProvider {
    @Volatile var locked = false

    @Volatile var calls = 0

    override fun atRestKey(): ByteArray {
        calls++
        if (locked) throw StarlingException.Locked("device is locked (test)")
        return key.copyOf()
    }
}

suspend fun openNode(
    dir: Path,
    keys: AtRestKeyProvider = InMemoryAtRestKeyProvider(),
): StarlingNode = StarlingNode.open(NodeConfig(dataDir = dir.toString()), keys)

suspend fun eventually(
    timeoutMs: Long = 5_000,
    what: String,
    check: suspend () -> Boolean,
) {
    try {
        withTimeout(timeoutMs) {
            while (!check()) delay(10)
        }
    } catch (e: Exception) {
        throw AssertionError("timed out waiting for: $what", e)
    }
}

/** Non-daemon JVM threads: must be the same before and after a test. */
fun nonDaemonThreads(): Set<String> =
    Thread
        .getAllStackTraces()
        .keys
        .filter { it.isAlive && !it.isDaemon }
        .map { it.name }
        .toSet()

/**
 * Fails if the non-daemon JVM threads are not the same as [before]. A native
 * thread that completed a call (a callback into the JVM) is attached by JNA
 * as an unnamed "Thread-N" and detached when the callback returns, so it can
 * still be listed for a moment after the last call: this waits up to
 * [timeoutMs] for the set to settle, then judges. A real leak stays. Call it
 * outside `runBlocking`, which renames the calling thread while it runs.
 */
fun assertNoThreadsLeft(
    before: Set<String>,
    timeoutMs: Long = 5_000,
) {
    val deadline = System.nanoTime() + timeoutMs * 1_000_000
    while (nonDaemonThreads() != before && System.nanoTime() < deadline) Thread.sleep(10)
    assertEquals(before, nonDaemonThreads(), "leaked JVM threads")
}
