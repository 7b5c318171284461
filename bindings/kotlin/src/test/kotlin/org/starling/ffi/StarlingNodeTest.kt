package org.starling.ffi

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.nio.file.Path

/** The node API through the generated bindings and the real native library. */
class StarlingNodeTest {
    @TempDir lateinit var tmp: Path

    private val opened = mutableListOf<StarlingNode>()
    private lateinit var threadsBefore: Set<String>

    @BeforeEach
    fun recordThreads() {
        threadsBefore = nonDaemonThreads()
    }

    @AfterEach
    fun closeEverything() {
        opened.forEach { it.close() }
        opened.clear()
        runBlocking {
            eventually(what = "all nodes released") { diagnostics().liveNodes == 0uL }
        }
        assertNoThreadsLeft(threadsBefore)
    }

    private suspend fun node(
        name: String,
        keys: AtRestKeyProvider = InMemoryAtRestKeyProvider(),
    ): StarlingNode = openNode(tmp.resolve(name), keys).also { opened += it }

    private suspend fun alice(): StarlingNode = node("alice").also { it.createIdentity("alice") }

    @Test
    fun `create an identity, show the phrase, restore it elsewhere`() =
        runBlocking<Unit> {
            val a = node("a")
            assertFalse(a.hasIdentity())
            val created = a.createIdentity("alice")
            assertTrue(created.authorId.startsWith("stl1"), created.authorId)
            assertEquals(24, created.recoveryPhrase.split(" ").size)
            assertTrue(a.hasIdentity())
            assertEquals(created.authorId, a.authorId())
            assertEquals(created.recoveryPhrase, a.recoveryPhrase())
            assertEquals("alice", a.profile(created.authorId).name)

            val b = node("b")
            assertEquals(created.authorId, b.restoreIdentity(created.recoveryPhrase))
            assertEquals(created.authorId, b.authorId())
            // The same phrase again is fine; another identity is refused.
            assertEquals(created.authorId, b.restoreIdentity(created.recoveryPhrase))
            val other = node("c").createIdentity(null)
            assertThrows<StarlingException.IdentityExists> { b.restoreIdentity(other.recoveryPhrase) }
            assertThrows<StarlingException.IdentityExists> { a.createIdentity(null) }
        }

    @Test
    fun `post and page through the timeline`() =
        runBlocking<Unit> {
            val a = alice()
            // Lists are ordered by (timestamp ms, id): space the posts out so
            // their order is the order of posting.
            val ids =
                (1..5).map {
                    delay(3)
                    a.post("post number $it")
                }
            assertEquals(5, ids.toSet().size)
            assertTrue(ids.all { it.startsWith("stle1") })

            val first = a.timeline(limit = 2u)
            assertEquals(listOf("post number 5", "post number 4"), first.items.map { it.text })
            val cursor = first.nextCursor!!
            val second = a.timeline(limit = 2u, before = cursor)
            assertEquals(listOf("post number 3", "post number 2"), second.items.map { it.text })
            val third = a.timeline(limit = 2u, before = second.nextCursor)
            assertEquals(listOf("post number 1"), third.items.map { it.text })
            assertNull(third.nextCursor)

            val me = a.authorId()
            val feed = a.feed(me)
            assertEquals(5, feed.items.size)
            assertTrue(feed.items.all { it.author == me && it.authorName == "alice" })
            assertEquals(ids.last(), feed.items.first().id)
        }

    @Test
    fun `replies form a thread`() =
        runBlocking<Unit> {
            val a = alice()
            val root = a.post("what is a starling?")
            delay(3)
            val r1 = a.reply(root, "a bird")
            delay(3)
            val r2 = a.post("a murmuration of them", replyTo = r1)
            val thread = a.thread(root)
            assertEquals(listOf(root, r1, r2), thread.map { it.id })
            assertNull(thread[0].replyTo)
            assertEquals(root, thread[1].replyTo)
            assertEquals(r1, thread[2].replyTo)
            assertEquals(root, thread[2].root)
            val elsewhere = node("bob").also { it.createIdentity(null) }.post("not synced here")
            assertThrows<StarlingException.NotFound> { a.thread(elsewhere) }
        }

    @Test
    fun `reactions are counted`() =
        runBlocking<Unit> {
            val a = alice()
            val p = a.post("react to me")
            a.react(p, "👍")
            assertEquals(listOf(ReactionCount("👍", 1uL)), a.reactions(p))
            assertEquals(listOf(ReactionCount("👍", 1uL)), a.timeline().items.single().reactions)
            assertThrows<StarlingException.InvalidInput> { a.react(p, "") }
        }

    @Test
    fun `follow, unfollow, block and profiles`() =
        runBlocking<Unit> {
            val a = alice()
            val bob = node("bob").createIdentity("bob").authorId
            val me = a.authorId()
            a.follow(bob)
            assertEquals(listOf(bob), a.follows(me))
            assertEquals(listOf(me), a.followers(bob))
            assertEquals(1uL, a.profile(me).following)
            a.unfollow(bob)
            assertEquals(emptyList<String>(), a.follows(me))
            a.block(bob)
            a.unblock(bob)
            assertThrows<StarlingException.InvalidInput> { a.follow(me) }

            a.setProfile(about = "I like birds")
            val profile = a.profile(me)
            assertEquals("alice", profile.name)
            assertEquals("I like birds", profile.about)
            assertFalse(profile.forked)
            // An unknown author has an empty profile.
            assertNull(a.profile(bob).name)
        }

    @Test
    fun `search finds words, delete erases the text`() =
        runBlocking<Unit> {
            val a = alice()
            val p = a.post("Hello Starling world")
            a.post("something else entirely")
            assertEquals(listOf(p), a.search("starling").items.map { it.id })
            assertEquals(listOf(p), a.search("WORLD hello").items.map { it.id })
            assertTrue(a.search("nothing-matches-this").items.isEmpty())
            assertThrows<StarlingException.InvalidInput> { a.search("   ") }

            val del = a.delete(p)
            assertNotEquals(p, del)
            assertTrue(a.search("starling").items.isEmpty())
            val deleted = a.timeline().items.single { it.id == p }
            assertTrue(deleted.deleted)
            assertNull(deleted.text)
            val elsewhere = node("bob").also { it.createIdentity(null) }.post("not synced here")
            assertThrows<StarlingException.NotFound> { a.delete(elsewhere) }
        }

    @Test
    fun `a reply from another node arrives as a notification via export and import`() =
        runBlocking<Unit> {
            val a = alice()
            val me = a.authorId()
            val p = a.post("anyone out there?")
            val b = node("bob")
            val bob = b.createIdentity("bob").authorId
            val reply = b.reply(p, "yes, hello @$me") // a reply that mentions: one Reply
            val mention = b.post("have you met @$me?")
            val reaction = b.react(p, "🐦")

            val file = tmp.resolve("bob.feed").toString()
            assertTrue(b.exportFeed(bob, file) >= 2uL)
            val report = a.importFeed(file)
            assertTrue(report.accepted >= 4uL)
            assertEquals(0uL, report.forks)
            assertEquals(report.accepted, a.importFeed(file).duplicates)

            val page = a.notifications()
            assertEquals(
                setOf(
                    NotificationKind.Reaction("🐦") to reaction,
                    NotificationKind.Mention to mention,
                    NotificationKind.Reply to reply,
                ),
                page.items.map { it.kind to it.entry }.toSet(),
            )
            assertEquals(3, page.items.size)
            assertTrue(page.items.all { it.from == bob })
            assertEquals(p, page.items.single { it.kind == NotificationKind.Reply }.subject)
            // Paging splits the same list without gaps or repeats.
            val first = a.notifications(limit = 1u)
            val rest = a.notifications(limit = 5u, before = first.nextCursor)
            assertEquals(page.items, first.items + rest.items)
            assertNull(rest.nextCursor)
            assertEquals(listOf(p, reply), a.thread(p).map { it.id })
            assertEquals("bob", a.thread(p)[1].authorName)
        }

    @Test
    fun `typed errors on bad input`() =
        runBlocking<Unit> {
            val a = node("a")
            assertThrows<StarlingException.NoIdentity> { a.timeline() }
            assertThrows<StarlingException.NoIdentity> { a.post("hi") }
            a.createIdentity(null)
            assertThrows<StarlingException.InvalidId> { a.react("not-an-id", "x") }
            assertThrows<StarlingException.InvalidId> { a.follow("stl1qqqq") }
            assertThrows<StarlingException.InvalidId> { a.thread(a.authorId()) } // an author id is not an entry id
            assertThrows<StarlingException.InvalidInput> { a.post("   ") }
            assertThrows<StarlingException.InvalidInput> { a.post("x".repeat(8193)) }
            assertThrows<StarlingException.InvalidInput> { a.timeline(limit = 0u) }
            assertThrows<StarlingException.InvalidInput> { a.timeline(limit = 201u) }
            assertThrows<StarlingException.InvalidInput> { a.timeline(before = "c1zz") }

            val b = node("b")
            // Valid words, wrong checksum: "abandon" x 23 + "art" is the valid
            // all-zero phrase, so "abandon" x 24 fails its checksum. (Changing
            // one word of a random phrase keeps the checksum valid 1 time in 256.)
            val wrong = List(24) { "abandon" }
            val e = assertThrows<StarlingException.InvalidInput> { b.restoreIdentity(wrong.joinToString(" ")) }
            assertTrue(e.detail.contains("phrase"), e.detail)
            assertThrows<StarlingException.InvalidInput> { b.restoreIdentity("not a phrase at all") }
            assertFalse(b.hasIdentity())
            assertThrows<StarlingException.InvalidInput> {
                StarlingNode.open(NodeConfig(dataDir = ""), InMemoryAtRestKeyProvider())
            }
        }

    @Test
    fun `a shut-down node fails with Closed`() =
        runBlocking<Unit> {
            val a = alice()
            assertFalse(a.isShutDown())
            a.shutdown()
            a.shutdown() // idempotent
            assertTrue(a.isShutDown())
            assertThrows<StarlingException.Closed> { a.post("too late") }
            assertThrows<StarlingException.Closed> { a.timeline() }
            // The data is intact: reopen the same directory.
            val again = openNode(tmp.resolve("alice")).also { opened += it }
            assertTrue(again.hasIdentity())
        }

    @Test
    fun `the key provider is asked only when a secret is needed and can refuse`() =
        runBlocking<Unit> {
            val keys = SwitchableKeys()
            keys.locked = true
            val a = node("a", keys)
            val e = assertThrows<StarlingException.Locked> { a.createIdentity(null) }
            assertTrue(e.detail.contains("device is locked"), e.detail)
            assertFalse(a.hasIdentity())
            keys.locked = false
            a.createIdentity(null)
            a.post("signed")
            a.shutdown()

            // After a restart, reading works while locked; signing needs the key.
            keys.locked = true
            val reopened = node("a", keys)
            assertEquals(1, reopened.timeline().items.size)
            assertThrows<StarlingException.Locked> { reopened.post("needs the key") }
            assertThrows<StarlingException.Locked> { reopened.recoveryPhrase() }
            keys.locked = false
            reopened.post("now it works")

            // A provider returning a key of the wrong size is a programming error.
            val bad =
                object : AtRestKeyProvider {
                    override fun atRestKey(): ByteArray = ByteArray(16)
                }
            assertThrows<StarlingException.InvalidInput> { node("bad", bad).createIdentity(null) }
            // An undeclared exception from the app surfaces as Internal... or
            // as Locked when the core asked for the key: never as a crash.
            val broken =
                object : AtRestKeyProvider {
                    override fun atRestKey(): ByteArray = throw IllegalStateException("boom")
                }
            assertThrows<StarlingException> { node("broken", broken).createIdentity(null) }
        }

    @Test
    fun `concurrent calls from many coroutines`() =
        runBlocking<Unit>(Dispatchers.Default) {
            val a = alice()
            val ids = (1..40).map { i -> async { a.post("concurrent $i") } }.awaitAll()
            assertEquals(40, ids.toSet().size)
            val reads = (1..20).map { async { a.timeline(limit = 200u).items.size } }.awaitAll()
            assertTrue(reads.all { it in 1..40 })
            assertEquals(40, a.timeline(limit = 200u).items.size)
        }

    @Test
    fun `logs reach the app's logger`() =
        runBlocking<Unit> {
            val lines = java.util.concurrent.ConcurrentLinkedQueue<LogRecord>()
            setLogger(
                object : LogSink {
                    override fun log(record: LogRecord) {
                        lines += record
                    }
                },
                LogLevel.INFO,
            )
            try {
                node("logged")
                eventually(what = "a log line") { lines.any { it.message.contains("node opened") } }
                val line = lines.first { it.message.contains("node opened") }
                assertEquals(LogLevel.INFO, line.level)
                assertTrue(line.target.startsWith("starling"), line.target)
            } finally {
                clearLogger()
            }
            lines.clear()
            node("quiet")
            assertTrue(lines.isEmpty())
        }

    @Test
    fun `version and key generation`() {
        assertTrue(libraryVersion().matches(Regex("""\d+\.\d+\.\d+.*""")))
        val k1 = generateAtRestKey()
        assertEquals(32, k1.size)
        assertFalse(k1.contentEquals(generateAtRestKey()))
    }
}
