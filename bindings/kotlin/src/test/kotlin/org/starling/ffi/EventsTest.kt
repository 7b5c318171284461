package org.starling.ffi

import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.nio.file.Path
import java.util.concurrent.ConcurrentLinkedQueue

/** Node events through a foreign listener and the Flow helper. */
class EventsTest {
    @TempDir lateinit var tmp: Path

    private val opened = mutableListOf<StarlingNode>()

    @AfterEach
    fun closeEverything() {
        opened.forEach { it.close() }
        opened.clear()
        runBlocking {
            eventually(what = "subscriptions and nodes released") {
                diagnostics() == Diagnostics(liveNodes = 0uL, liveSubscriptions = 0uL, liveNetworks = 0uL)
            }
        }
    }

    private suspend fun node(name: String): StarlingNode =
        openNode(tmp.resolve(name)).also { opened += it }

    /** Waits until `n` subscriptions are registered, so no event is missed. */
    private suspend fun awaitSubscriptions(n: Int) =
        eventually(what = "$n subscription(s)") { diagnostics().liveSubscriptions == n.toULong() }

    @Test
    fun `own posts arrive as EntryAdded events in a Flow`() =
        runBlocking<Unit> {
            val a = node("a")
            a.createIdentity(null)
            val me = a.authorId()
            val events =
                async(start = CoroutineStart.UNDISPATCHED) {
                    withTimeout(10_000) {
                        a.events().filterIsInstance<NodeEvent.EntryAdded>().take(3).toList()
                    }
                }
            awaitSubscriptions(1)
            val ids = listOf(a.post("one"), a.post("two"), a.post("three"))
            val got = events.await()
            assertEquals(ids, got.map { it.id })
            assertTrue(got.all { it.own && it.author == me })
            assertEquals(got.map { it.seq }.sorted(), got.map { it.seq })
            // Collecting stopped (take(3)): the subscription was cancelled and released.
            eventually(what = "subscription released") { diagnostics().liveSubscriptions == 0uL }
        }

    @Test
    fun `imported entries arrive as events that are not own`() =
        runBlocking<Unit> {
            val a = node("a")
            a.createIdentity(null)
            val b = node("b")
            val bob = b.createIdentity("bob").authorId
            b.post("from bob")
            val file = tmp.resolve("bob.feed").toString()
            val exported = b.exportFeed(bob, file)

            val events =
                async(start = CoroutineStart.UNDISPATCHED) {
                    withTimeout(10_000) {
                        a.events().filterIsInstance<NodeEvent.EntryAdded>().take(exported.toInt()).toList()
                    }
                }
            awaitSubscriptions(1)
            a.importFeed(file)
            val got = events.await()
            assertTrue(got.all { !it.own && it.author == bob }, got.toString())
            assertEquals((1uL..exported).toList(), got.map { it.seq })
        }

    @Test
    fun `a listener stops on cancel and on shutdown`() =
        runBlocking<Unit> {
            val a = node("a")
            a.createIdentity(null)
            val seen = ConcurrentLinkedQueue<NodeEvent>()
            val listener =
                object : NodeEventListener {
                    override fun onEvent(event: NodeEvent) {
                        seen += event
                    }
                }
            val sub = a.subscribe(listener)
            assertTrue(sub.isActive())
            a.post("seen")
            eventually(what = "first event") { seen.size == 1 }
            sub.cancel()
            assertFalse(sub.isActive())
            a.post("not seen")
            eventually(what = "subscription ended") { diagnostics().liveSubscriptions == 0uL }
            assertEquals(1, seen.size)
            sub.close()

            // Shutdown ends every subscription of the node; subscribing after is Closed.
            val sub2 = a.subscribe(listener)
            awaitSubscriptions(1)
            a.shutdown()
            assertFalse(sub2.isActive())
            eventually(what = "subscription ended by shutdown") { diagnostics().liveSubscriptions == 0uL }
            sub2.close()
            assertThrows<StarlingException.Closed> { a.subscribe(listener) }
        }

    @Test
    fun `a throwing listener does not end the subscription`() =
        runBlocking<Unit> {
            val a = node("a")
            a.createIdentity(null)
            val seen = ConcurrentLinkedQueue<String>()
            val sub =
                a.subscribe(
                    object : NodeEventListener {
                        override fun onEvent(event: NodeEvent) {
                            val e = event as NodeEvent.EntryAdded
                            seen += e.id
                            throw IllegalStateException("app bug")
                        }
                    },
                )
            val p1 = a.post("one")
            val p2 = a.post("two")
            eventually(what = "both events despite exceptions") { seen.toList() == listOf(p1, p2) }
            sub.close() // releasing the handle cancels it
            eventually(what = "subscription released") { diagnostics().liveSubscriptions == 0uL }
        }

    @Test
    fun `first event helper usage`() =
        runBlocking<Unit> {
            val a = node("a")
            a.createIdentity(null)
            val first = async(start = CoroutineStart.UNDISPATCHED) { withTimeout(10_000) { a.events().first() } }
            awaitSubscriptions(1)
            val id = a.post("hello")
            assertEquals(id, (first.await() as NodeEvent.EntryAdded).id)
        }
}
