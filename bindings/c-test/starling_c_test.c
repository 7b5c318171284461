/*
 * Calls libstarling_ffi through the exact C ABI that the Swift bindings use
 * (the generated StarlingFFI.h): RustBuffer / RustCallStatus, a foreign-trait
 * vtable implemented in C (the at-rest key provider), and the async methods
 * driven through rust_future_poll / complete / free.
 *
 * Flow: open a node in a temp dir -> create an identity -> publish a post ->
 * read it back from the timeline; plus one typed error (a malformed id);
 * start networking on 127.0.0.1, read the listen address, stop it.
 *
 * Build (see bindings/scripts/test-bindings):
 *   cc -std=c11 -D_Nullable= -D_Nonnull= -I<dir of StarlingFFI.h> \
 *      starling_c_test.c -L<target/debug> -lstarling_ffi -lpthread
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "StarlingFFI.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        checks++;                                          \
        if (!(cond)) {                                     \
            failures++;                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fprintf(stderr, "\n");                         \
        }                                                  \
    } while (0)

/* ---- RustBuffer helpers ------------------------------------------------ */

/* A growable byte buffer for serialising arguments (uniffi's format:
 * big-endian integers, strings as i32 length + UTF-8, Option as a 0/1 byte). */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} Bytes;

static void put(Bytes *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 16;
        b->data = realloc(b->data, b->cap);
        if (!b->data) abort();
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

static void put_i32(Bytes *b, int32_t v) {
    uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, be, 4);
}

static void put_u8(Bytes *b, uint8_t v) { put(b, &v, 1); }

static void put_string(Bytes *b, const char *s) {
    put_i32(b, (int32_t)strlen(s));
    put(b, s, strlen(s));
}

/* Copies bytes into a buffer owned by Rust (which frees what it receives). */
static RustBuffer to_rust(const void *data, size_t len) {
    RustCallStatus st = {0};
    ForeignBytes fb = {(int32_t)len, data};
    RustBuffer rb = ffi_starling_ffi_rustbuffer_from_bytes(fb, &st);
    if (st.code != 0) {
        fprintf(stderr, "rustbuffer_from_bytes failed\n");
        exit(2);
    }
    return rb;
}

static RustBuffer rust_string(const char *s) { return to_rust(s, strlen(s)); }

static RustBuffer rust_bytes(Bytes *b) {
    RustBuffer rb = to_rust(b->data, b->len);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    return rb;
}

static void free_rust(RustBuffer rb) {
    RustCallStatus st = {0};
    ffi_starling_ffi_rustbuffer_free(rb, &st);
}

/* Reading serialised results. */
typedef struct {
    const uint8_t *p, *end;
} Reader;

static uint64_t get_be(Reader *r, int n) {
    uint64_t v = 0;
    if (r->p + n > r->end) {
        fprintf(stderr, "read past end of buffer\n");
        exit(2);
    }
    for (int i = 0; i < n; i++) v = (v << 8) | *r->p++;
    return v;
}

/* Returns a malloc'd NUL-terminated copy of a serialised string. */
static char *get_string(Reader *r) {
    int32_t len = (int32_t)get_be(r, 4);
    if (len < 0 || r->p + len > r->end) exit(2);
    char *s = malloc((size_t)len + 1);
    memcpy(s, r->p, (size_t)len);
    s[len] = 0;
    r->p += len;
    return s;
}

static char *get_opt_string(Reader *r) { return get_be(r, 1) ? get_string(r) : NULL; }

/* A top-level String return is the raw UTF-8 bytes. */
static char *take_string(RustBuffer rb) {
    char *s = malloc(rb.len + 1);
    if (rb.len) memcpy(s, rb.data, rb.len);
    s[rb.len] = 0;
    free_rust(rb);
    return s;
}

/* ---- driving a Rust future from C --------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fired;
    int8_t code;
} Waker;

/* Called by Rust (possibly on another thread) when the future can progress. */
static void on_wake(uint64_t data, int8_t poll_code) {
    Waker *w = (Waker *)(uintptr_t)data;
    pthread_mutex_lock(&w->mu);
    w->fired = 1;
    w->code = poll_code;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

typedef void (*PollFn)(uint64_t, UniffiRustFutureContinuationCallback, uint64_t);

/* Polls until the future reports READY (0); MAYBE_READY (1) means poll again. */
static void drive(uint64_t future, PollFn poll) {
    Waker w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 1};
    for (;;) {
        pthread_mutex_lock(&w.mu);
        w.fired = 0;
        pthread_mutex_unlock(&w.mu);
        poll(future, on_wake, (uint64_t)(uintptr_t)&w);
        pthread_mutex_lock(&w.mu);
        while (!w.fired) pthread_cond_wait(&w.cv, &w.mu);
        int8_t code = w.code;
        pthread_mutex_unlock(&w.mu);
        if (code == 0) return;
    }
}

static uint64_t await_u64(uint64_t fut, RustCallStatus *st) {
    drive(fut, ffi_starling_ffi_rust_future_poll_u64);
    uint64_t v = ffi_starling_ffi_rust_future_complete_u64(fut, st);
    ffi_starling_ffi_rust_future_free_u64(fut);
    return v;
}

static void await_void(uint64_t fut, RustCallStatus *st) {
    drive(fut, ffi_starling_ffi_rust_future_poll_void);
    ffi_starling_ffi_rust_future_complete_void(fut, st);
    ffi_starling_ffi_rust_future_free_void(fut);
}

static RustBuffer await_buffer(uint64_t fut, RustCallStatus *st) {
    drive(fut, ffi_starling_ffi_rust_future_poll_rust_buffer);
    RustBuffer v = ffi_starling_ffi_rust_future_complete_rust_buffer(fut, st);
    ffi_starling_ffi_rust_future_free_rust_buffer(fut);
    return v;
}

/* Describes a failed call's StarlingError: variant index + detail. */
static int32_t error_variant(RustCallStatus *st, char **detail) {
    Reader r = {st->errorBuf.data, st->errorBuf.data + st->errorBuf.len};
    int32_t variant = (int32_t)get_be(&r, 4);
    *detail = get_string(&r);
    free_rust(st->errorBuf);
    return variant;
}

static void expect_ok(RustCallStatus *st, const char *what) {
    if (st->code == 0) return;
    char *detail = NULL;
    int32_t v = st->code == 1 ? error_variant(st, &detail) : -1;
    fprintf(stderr, "FATAL: %s failed: status %d, variant %d: %s\n", what, st->code, v,
            detail ? detail : "(panic)");
    exit(1);
}

/* ---- the at-rest key provider, implemented in C ------------------------- */

static uint8_t at_rest_key[32];
static int key_requests = 0;

static void key_free(uint64_t handle) { (void)handle; }
static uint64_t key_clone(uint64_t handle) { return handle; }

static void key_get(uint64_t handle, RustBuffer *out, RustCallStatus *st) {
    (void)handle;
    key_requests++;
    Bytes b = {0};
    put_i32(&b, 32); /* Vec<u8>: i32 count, then the bytes */
    put(&b, at_rest_key, 32);
    *out = rust_bytes(&b);
    st->code = 0;
}

static const UniffiVTableCallbackInterfaceAtRestKeyProvider key_vtable = {
    key_free, key_clone, key_get};

/* Foreign-implemented objects are passed as odd handles. */
#define KEY_PROVIDER_HANDLE 1u

/* ---- the test ------------------------------------------------------------ */

static uint64_t clone_node(uint64_t node) {
    RustCallStatus st = {0};
    uint64_t h = uniffi_starling_ffi_fn_clone_starlingnode(node, &st);
    expect_ok(&st, "clone node");
    return h;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    RustCallStatus st = {0};

    /* A synchronous call. */
    char *version = take_string(uniffi_starling_ffi_fn_func_library_version(&st));
    expect_ok(&st, "library_version");
    printf("libstarling_ffi %s, uniffi contract %u\n", version,
           ffi_starling_ffi_uniffi_contract_version());
    free(version);

    /* A fresh key from the library; then the C key provider serves it. */
    RustBuffer key = uniffi_starling_ffi_fn_func_generate_at_rest_key(&st);
    expect_ok(&st, "generate_at_rest_key");
    Reader kr = {key.data, key.data + key.len};
    CHECK(get_be(&kr, 4) == 32, "a generated key has 32 bytes");
    memcpy(at_rest_key, kr.p, 32);
    free_rust(key);
    uniffi_starling_ffi_fn_init_callback_vtable_atrestkeyprovider(&key_vtable);

    /* StarlingNode.open(NodeConfig { data_dir }, keys) -- async constructor. */
    Bytes cfg = {0};
    put_string(&cfg, dir);
    uint64_t node = await_u64(
        uniffi_starling_ffi_fn_constructor_starlingnode_open(rust_bytes(&cfg), KEY_PROVIDER_HANDLE),
        &st);
    expect_ok(&st, "open");

    /* createIdentity(name = "c-test") -> NewIdentity { author_id, recovery_phrase } */
    Bytes name = {0};
    put_u8(&name, 1);
    put_string(&name, "c-test");
    RustBuffer created = await_buffer(
        uniffi_starling_ffi_fn_method_starlingnode_create_identity(clone_node(node), rust_bytes(&name)),
        &st);
    expect_ok(&st, "create_identity");
    Reader cr = {created.data, created.data + created.len};
    char *author = get_string(&cr);
    char *phrase = get_string(&cr);
    free_rust(created);
    CHECK(strncmp(author, "stl1", 4) == 0, "author id %s starts with stl1", author);
    int words = 1;
    for (char *c = phrase; *c; c++) words += *c == ' ';
    CHECK(words == 24, "recovery phrase has 24 words, got %d", words);
    CHECK(key_requests >= 1, "the C key provider was asked for the key");
    memset(phrase, 0, strlen(phrase));
    free(phrase);

    /* post(text, replyTo = null) -> entry id */
    const char *text = "hello from C";
    Bytes no_reply = {0};
    put_u8(&no_reply, 0);
    char *post_id = take_string(await_buffer(
        uniffi_starling_ffi_fn_method_starlingnode_post(clone_node(node), rust_string(text),
                                                          rust_bytes(&no_reply)),
        &st));
    expect_ok(&st, "post");
    CHECK(strncmp(post_id, "stle1", 5) == 0, "entry id %s starts with stle1", post_id);

    /* timeline(limit = 10, before = null) -> PostPage */
    Bytes no_cursor = {0};
    put_u8(&no_cursor, 0);
    RustBuffer page = await_buffer(
        uniffi_starling_ffi_fn_method_starlingnode_timeline(clone_node(node), 10, rust_bytes(&no_cursor)),
        &st);
    expect_ok(&st, "timeline");
    Reader pr = {page.data, page.data + page.len};
    int32_t items = (int32_t)get_be(&pr, 4);
    CHECK(items == 1, "timeline has 1 post, got %d", items);
    if (items >= 1) {
        char *id = get_string(&pr);
        char *post_author = get_string(&pr);
        char *author_name = get_opt_string(&pr);
        uint64_t seq = get_be(&pr, 8);
        uint64_t ts = get_be(&pr, 8);
        char *body = get_opt_string(&pr);
        CHECK(strcmp(id, post_id) == 0, "timeline item is the post (%s)", id);
        CHECK(strcmp(post_author, author) == 0, "post author is us");
        CHECK(author_name && strcmp(author_name, "c-test") == 0, "author name is c-test");
        CHECK(seq >= 2, "post seq %llu follows the identity's first entries", (unsigned long long)seq);
        CHECK(ts > 1577836800000ull, "timestamp is after 2020");
        CHECK(body && strcmp(body, text) == 0, "post text read back: %s", body ? body : "(null)");
        printf("read back: [%s] seq=%llu %s: %s\n", author_name ? author_name : "?",
               (unsigned long long)seq, id, body ? body : "(deleted)");
        free(id), free(post_author), free(author_name), free(body);
    }
    free_rust(page);

    /* A typed error: react("not-an-id", "x") -> StarlingError.InvalidId (variant 1). */
    uint64_t fut = uniffi_starling_ffi_fn_method_starlingnode_react(
        clone_node(node), rust_string("not-an-id"), rust_string("x"));
    RustBuffer none = await_buffer(fut, &st);
    CHECK(st.code == 1, "a malformed id is an error (status %d)", st.code);
    if (st.code == 1) {
        char *detail = NULL;
        int32_t variant = error_variant(&st, &detail);
        CHECK(variant == 1, "error is InvalidId (variant 1), got %d: %s", variant, detail);
        printf("typed error: variant %d (InvalidId): %s\n", variant, detail);
        free(detail);
    } else {
        free_rust(none);
    }
    st.code = 0;

    /* Networking on 127.0.0.1: startNetwork(NetworkConfig { listenAddresses,
     * mdns = false, bootstrap = [], redialKnownPeers = false }), then
     * listenAddresses() (sync), stopNetwork(), and peerId() after the stop
     * -> StarlingError.NetworkNotRunning (variant 12). */
    Bytes net = {0};
    put_i32(&net, 1);
    put_string(&net, "/ip4/127.0.0.1/tcp/0");
    put_u8(&net, 0);
    put_i32(&net, 0);
    put_u8(&net, 0);
    await_void(uniffi_starling_ffi_fn_method_starlingnode_start_network(clone_node(node), rust_bytes(&net)),
               &st);
    expect_ok(&st, "start_network");
    RustBuffer addrs = uniffi_starling_ffi_fn_method_starlingnode_listen_addresses(clone_node(node), &st);
    expect_ok(&st, "listen_addresses");
    Reader ar = {addrs.data, addrs.data + addrs.len};
    int32_t n_addrs = (int32_t)get_be(&ar, 4);
    char *addr = n_addrs > 0 ? get_string(&ar) : NULL;
    free_rust(addrs);
    CHECK(n_addrs == 1 && addr && strncmp(addr, "/ip4/127.0.0.1/tcp/", 19) == 0 && strstr(addr, "/p2p/12D3Koo"),
          "listening on one loopback address: %s", addr ? addr : "(none)");
    printf("listening on %s\n", addr ? addr : "(none)");
    free(addr);
    await_void(uniffi_starling_ffi_fn_method_starlingnode_stop_network(clone_node(node)), &st);
    expect_ok(&st, "stop_network");
    RustBuffer no_peer = uniffi_starling_ffi_fn_method_starlingnode_peer_id(clone_node(node), &st);
    CHECK(st.code == 1, "peerId after stopNetwork is an error (status %d)", st.code);
    if (st.code == 1) {
        char *detail = NULL;
        int32_t variant = error_variant(&st, &detail);
        CHECK(variant == 12, "error is NetworkNotRunning (variant 12), got %d: %s", variant, detail);
        free(detail);
    } else {
        free_rust(no_peer);
    }
    st.code = 0;

    /* Release the node; the library reports nothing left alive. */
    uniffi_starling_ffi_fn_free_starlingnode(node, &st);
    expect_ok(&st, "free node");
    RustBuffer diag = uniffi_starling_ffi_fn_func_diagnostics(&st);
    expect_ok(&st, "diagnostics");
    Reader dr = {diag.data, diag.data + diag.len};
    uint64_t live_nodes = get_be(&dr, 8);
    free_rust(diag);
    CHECK(live_nodes == 0, "no live nodes after free, got %llu", (unsigned long long)live_nodes);

    free(author);
    free(post_id);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
