package org.starling.ffi

import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.nio.file.Files
import java.nio.file.Path
import kotlin.random.Random

/**
 * Networking, blobs and end-to-end messages between nodes in this JVM, over
 * real sockets on 127.0.0.1 only (mDNS off), with bounded waits.
 */
class NetworkTest {
    @TempDir lateinit var tmp: Path

    private val opened = mutableListOf<StarlingNode>()
    private lateinit var threadsBefore: Set<String>

    /** Two nodes with identities and running networks. */
    private class Nodes(
        val a: StarlingNode,
        val aId: String,
        val b: StarlingNode,
        val bId: String,
    )

    @BeforeEach
    fun recordThreads() {
        threadsBefore = nonDaemonThreads()
    }

    @AfterEach
    fun closeEverything() {
        runBlocking { opened.forEach { if (!it.isShutDown()) it.stopNetwork() } }
        opened.forEach { it.close() }
        opened.clear()
        runBlocking {
            eventually(timeoutMs = 15_000, what = "nodes, subscriptions and networks released") {
                diagnostics() == Diagnostics(liveNodes = 0uL, liveSubscriptions = 0uL, liveNetworks = 0uL)
            }
        }
        assertNoThreadsLeft(threadsBefore)
    }

    private fun loopback() =
        NetworkConfig(
            listenAddresses = listOf("/ip4/127.0.0.1/tcp/0"),
            mdns = false,
            redialKnownPeers = false,
        )

    private suspend fun node(name: String): StarlingNode = openNode(tmp.resolve(name)).also { opened += it }

    private suspend fun started(name: String): Pair<StarlingNode, String> {
        val n = node(name)
        val id = n.createIdentity(name).authorId
        n.startNetwork(loopback())
        return n to id
    }

    private suspend fun pair(): Nodes {
        val (a, aId) = started("a")
        val (b, bId) = started("b")
        return Nodes(a, aId, b, bId)
    }

    /** Waits until `n` subscriptions are registered, so no event is missed. */
    private suspend fun awaitSubscriptions(n: Int) =
        eventually(what = "$n subscription(s)") { diagnostics().liveSubscriptions == n.toULong() }

    @Test
    fun `two nodes sync over loopback and see each other's posts as events`() =
        runBlocking<Unit> {
            val p = pair()
            val (a, b) = p.a to p.b
            assertTrue(a.isNetworkRunning())
            val bPeer = b.peerId()
            assertTrue(bPeer.startsWith("12D3Koo"), bPeer)
            val bAddr = b.listenAddresses().single()
            assertTrue(bAddr.startsWith("/ip4/127.0.0.1/tcp/") && bAddr.endsWith("/p2p/$bPeer"), bAddr)

            a.follow(p.bId)
            b.follow(p.aId)
            val fromA = a.post("hello from a")
            val fromB = b.post("hello from b")
            val atB =
                async(start = CoroutineStart.UNDISPATCHED) {
                    withTimeout(30_000) { b.events().filterIsInstance<NodeEvent.EntryAdded>().first { it.id == fromA } }
                }
            val atA =
                async(start = CoroutineStart.UNDISPATCHED) {
                    withTimeout(30_000) { a.events().filterIsInstance<NodeEvent.EntryAdded>().first { it.id == fromB } }
                }
            val connected =
                async(start = CoroutineStart.UNDISPATCHED) {
                    withTimeout(30_000) { a.events().filterIsInstance<NodeEvent.PeerConnected>().first() }
                }
            awaitSubscriptions(3)

            assertEquals(bPeer, a.dial(bAddr))
            assertEquals(bPeer, connected.await().peerId)
            val gotAtB = atB.await()
            assertEquals(p.aId, gotAtB.author)
            assertFalse(gotAtB.own)
            assertEquals(p.bId, atA.await().author)
            assertEquals(listOf("hello from a"), b.feed(p.aId).items.map { it.text })
            assertTrue(b.timeline().items.any { it.id == fromA })
            assertTrue(a.peers().any { it.peerId == bPeer && it.addresses.isNotEmpty() && !it.relayed })
            eventually(timeoutMs = 10_000, what = "sync status names b's author") {
                a.syncStatus().any { it.peerId == bPeer && it.authorId == p.bId }
            }

            // A post made while connected arrives live. (The three collectors
            // above have finished; wait until their subscriptions are gone.)
            awaitSubscriptions(0)
            val live =
                async(start = CoroutineStart.UNDISPATCHED) {
                    withTimeout(30_000) {
                        b.events().filterIsInstance<NodeEvent.EntryAdded>().first { it.author == p.aId && it.seq > gotAtB.seq }
                    }
                }
            awaitSubscriptions(1)
            val later = a.post("live from a")
            assertEquals(later, live.await().id)

            a.stopNetwork()
            assertFalse(a.isNetworkRunning())
            assertThrows<StarlingException.NetworkNotRunning> { a.peers() }
            a.stopNetwork() // idempotent
        }

    @Test
    fun `an invite connects two nodes and they follow each other`() =
        runBlocking<Unit> {
            val p = pair()
            val code = p.a.createInvite()
            val accepted = p.b.acceptInvite(code)
            assertEquals(p.aId, accepted.inviterId)
            assertFalse(accepted.relay)
            assertNull(accepted.relayCircuit)
            assertNull(accepted.relayReservationError)
            assertTrue(p.b.follows(p.bId).contains(p.aId))
            eventually(timeoutMs = 10_000, what = "the inviter follows back") { p.a.follows(p.aId).contains(p.bId) }
            // One-time: the same code again is refused.
            assertThrows<StarlingException.InvalidInput> { p.b.acceptInvite(code) }
            // The inviter is not a relay, so it is not remembered as one.
            assertEquals(emptyList<RelayInfo>(), p.b.relays())
            assertFalse(p.b.forgetRelay(p.a.peerId()))
        }

    @Test
    fun `a node on loopback alone has unknown reachability and no external addresses`() =
        runBlocking<Unit> {
            val idle = node("idle").also { it.createIdentity(null) }
            assertThrows<StarlingException.NetworkNotRunning> { idle.reachability() }
            assertThrows<StarlingException.NetworkNotRunning> { idle.externalAddresses() }

            // AutoNAT asks only peers seen at a public address to dial back,
            // and on loopback there are none, connected or not.
            val p = pair()
            assertEquals(Reachability.UNKNOWN, p.a.reachability())
            assertEquals(emptyList<String>(), p.a.externalAddresses())
            p.a.dial(p.b.listenAddresses().first())
            assertEquals(Reachability.UNKNOWN, p.a.reachability())
            assertEquals(emptyList<String>(), p.a.externalAddresses())
            assertEquals(emptyList<String>(), p.b.externalAddresses())

            p.a.stopNetwork()
            assertThrows<StarlingException.NetworkNotRunning> { p.a.reachability() }
            assertThrows<StarlingException.NetworkNotRunning> { p.a.externalAddresses() }
        }

    @Test
    fun `a node that accepted no relay invite has no relays and forgetRelay checks the peer id`() =
        runBlocking<Unit> {
            val idle = node("idle").also { it.createIdentity(null) }
            val (a, _) = started("a")
            val somePeer = a.peerId()
            assertThrows<StarlingException.NetworkNotRunning> { idle.relays() }
            assertThrows<StarlingException.NetworkNotRunning> { idle.forgetRelay(somePeer) }
            // A malformed peer id is refused before networking is looked at.
            assertThrows<StarlingException.InvalidInput> { idle.forgetRelay("not a peer id") }

            // A node that accepted no relay's invite keeps no reservation.
            assertEquals(emptyList<RelayInfo>(), a.relays())
            assertFalse(a.forgetRelay(somePeer))
            assertFalse(a.forgetRelay("  $somePeer  "), "surrounding blanks are ignored")
            assertThrows<StarlingException.InvalidInput> { a.forgetRelay("not a peer id") }
            assertThrows<StarlingException.InvalidInput> { a.forgetRelay("") }
            assertThrows<StarlingException.InvalidInput> { a.forgetRelay(a.listenAddresses().first()) }
        }

    @Test
    fun `a blob added on one node is fetched by another`() =
        runBlocking<Unit> {
            val p = pair()
            val bytes = Random(7).nextBytes(200_000)
            val ref = p.a.addBlob(bytes, "image/jpeg")
            assertTrue(ref.id.startsWith("stlb1"), ref.id)
            assertEquals(200_000uL, ref.size)
            assertEquals("image/jpeg", ref.mime)
            val file = tmp.resolve("note.txt").also { Files.writeString(it, "a file as a blob") }
            val fileRef = p.a.addBlobFromPath(file.toString())
            assertEquals("text/plain", fileRef.mime)
            assertTrue(p.a.hasBlob(ref.id))
            assertFalse(p.b.hasBlob(ref.id))

            val fetched =
                async(start = CoroutineStart.UNDISPATCHED) {
                    withTimeout(30_000) { p.b.events().filterIsInstance<NodeEvent.BlobFetched>().first() }
                }
            awaitSubscriptions(1)
            p.b.dial(p.a.listenAddresses().first())
            assertArrayEquals(bytes, p.b.fetchBlob(ref.id))
            assertEquals(NodeEvent.BlobFetched(ref.id, 200_000uL), fetched.await())
            assertTrue(p.b.hasBlob(ref.id))
            assertEquals("a file as a blob", String(p.b.fetchBlob(fileRef.id)))
            val unknown = node("c").addBlob("nobody has this".toByteArray())
            assertThrows<StarlingException.NotFound> { p.b.fetchBlob(unknown.id) }
            assertThrows<StarlingException.InvalidId> { p.b.fetchBlob("stlb1nope") }
        }

    @Test
    fun `encrypted direct messages both ways and a group`() =
        runBlocking<Unit> {
            val p = pair()
            val (a, b) = p.a to p.b
            a.follow(p.bId)
            b.follow(p.aId)
            a.dial(b.listenAddresses().first())
            // B's prekey bundle reaches A with B's feed; until then sending
            // is refused with NoPrekeyBundle.
            eventually(timeoutMs = 30_000, what = "a can message b") {
                try {
                    a.sendDm(p.bId, "secret hello")
                    true
                } catch (e: StarlingException.NoPrekeyBundle) {
                    false
                }
            }
            eventually(timeoutMs = 30_000, what = "b reads a's message") {
                b.directMessages(p.aId).any { it.text == "secret hello" }
            }
            val atB = b.directMessages(p.aId).single()
            assertEquals(p.aId, atB.sender)
            assertFalse(atB.outgoing)
            assertEquals(Conversation.Direct(p.aId), atB.conversation)
            val sent = a.messages(Conversation.Direct(p.bId)).single()
            assertTrue(sent.outgoing)
            assertEquals("secret hello", sent.text)

            // The app hears of the reply by an event (without its text).
            val replyEvent =
                async(start = CoroutineStart.UNDISPATCHED) {
                    withTimeout(30_000) { a.events().filterIsInstance<NodeEvent.MessageReceived>().first() }
                }
            awaitSubscriptions(1)
            b.sendDm(p.aId, "secret reply")
            eventually(timeoutMs = 30_000, what = "a reads b's reply") {
                a.directMessages(p.bId).any { it.text == "secret reply" && !it.outgoing }
            }
            val heard = replyEvent.await()
            assertEquals(Conversation.Direct(p.bId), heard.conversation)
            assertEquals(p.bId, heard.senderId)
            val convs = b.conversations()
            assertEquals(listOf(Conversation.Direct(p.aId)), convs.map { it.conversation })
            assertEquals(2uL, convs.single().messageCount)
            val number = a.safetyNumber(p.bId)
            assertEquals(60, number.count { it.isDigit() })
            assertEquals(number, b.safetyNumber(p.aId))
            assertEquals(TrustState.UNVERIFIED, a.trust(p.bId))
            a.markVerified(p.bId)
            assertEquals(TrustState.VERIFIED, a.trust(p.bId))

            val g = a.createGroup("birds")
            assertEquals(64, g.length)
            a.addGroupMember(g, p.bId)
            val info = a.groupInfo(g)
            assertEquals("birds", info.name)
            assertEquals(setOf(p.aId, p.bId), info.members.toSet())
            assertEquals(listOf(p.aId), info.admins)
            a.sendGroupMessage(g, "hello birds")
            eventually(timeoutMs = 30_000, what = "b reads the group message") {
                b.messages(Conversation.Group(g)).any { it.text == "hello birds" && it.sender == p.aId }
            }
            assertEquals(listOf(g), b.groups())
            assertTrue(b.groupInfo(g).isMember)
            a.removeGroupMember(g, p.bId)
            assertFalse(a.groupInfo(g).members.contains(p.bId))

            assertThrows<StarlingException.InvalidInput> { a.sendDm(p.aId, "to myself") }
            assertThrows<StarlingException.InvalidId> { a.groupInfo("not-hex") }
            assertThrows<StarlingException.NotFound> { a.groupInfo("00".repeat(32)) }
            val stranger = node("c").createIdentity(null).authorId
            assertThrows<StarlingException.NoPrekeyBundle> { a.sendDm(stranger, "who are you") }
        }

    @Test
    fun `network errors are typed and a shut-down node gives Closed`() =
        runBlocking<Unit> {
            val idle = node("idle").also { it.createIdentity(null) }
            assertFalse(idle.isNetworkRunning())
            assertThrows<StarlingException.NetworkNotRunning> { idle.peers() }
            assertThrows<StarlingException.NetworkNotRunning> { idle.peerId() }
            assertThrows<StarlingException.NetworkNotRunning> { idle.dial("/ip4/127.0.0.1/tcp/1") }
            assertThrows<StarlingException.NetworkNotRunning> { idle.createInvite() }
            assertThrows<StarlingException.InvalidInput> {
                idle.startNetwork(NetworkConfig(listenAddresses = listOf("not an address"), mdns = false))
            }
            // Blobs work without networking.
            val ref = idle.addBlob("local".toByteArray())
            assertEquals("local", String(idle.fetchBlob(ref.id)))

            val (a, _) = started("a")
            assertThrows<StarlingException.NetworkRunning> { a.startNetwork(loopback()) }
            assertThrows<StarlingException.InvalidInput> { a.dial("nonsense") }
            // Nothing listens on port 1: the dial fails as a network error.
            assertThrows<StarlingException.Network> { a.dial("/ip4/127.0.0.1/tcp/1") }
            assertThrows<StarlingException.InvalidInput> { a.acceptInvite("not an invite") }
            val addr = a.listenAddresses().first()

            a.shutdown()
            assertFalse(a.isNetworkRunning())
            assertThrows<StarlingException.Closed> { a.dial(addr) }
            assertThrows<StarlingException.Closed> { a.peers() }
            assertThrows<StarlingException.Closed> { a.peerId() }
            assertThrows<StarlingException.Closed> { a.syncStatus() }
            assertThrows<StarlingException.Closed> { a.reachability() }
            assertThrows<StarlingException.Closed> { a.externalAddresses() }
            assertThrows<StarlingException.Closed> { a.relays() }
            assertThrows<StarlingException.Closed> { a.forgetRelay(addr.substringAfterLast("/p2p/")) }
            assertThrows<StarlingException.Closed> { a.startNetwork(loopback()) }
            assertThrows<StarlingException.Closed> { a.addBlob(byteArrayOf(1)) }
            assertThrows<StarlingException.Closed> { a.fetchBlob(ref.id) }
            assertThrows<StarlingException.Closed> { a.sendDm(idle.authorId(), "hi") }
            assertThrows<StarlingException.Closed> { a.conversations() }
            a.stopNetwork() // nothing to stop; no error
            eventually(timeoutMs = 15_000, what = "the network stopped after shutdown") { diagnostics().liveNetworks == 0uL }
        }
}
