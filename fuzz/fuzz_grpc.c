/*
 * fuzz_grpc.c — libFuzzer target for the gRPC transport's decoders and the message conversions:
 * the input is what a client sends on one HTTP/2 connection after the preface (frames: SETTINGS,
 * HEADERS with HPACK, DATA with gRPC's length-prefixed and possibly gzipped messages, RST_STREAM,
 * GOAWAY, ...). grpc/ag_grpc.c's ag_grpc_feed runs it through the network thread's own nghttp2
 * callbacks, framing checks and gzip inflation; each call that completes goes through the RPC
 * table's lookup, the scan of its path parameters, its decoder and, with the decoded body as the
 * result, its encoder (api/api_grpc.c ag_grpc_api_convert). No server, no storage.
 * An input starting with byte 0 skips the transport: its second byte picks an RPC of the table
 * (modulo its length) and the rest is that RPC's request message, so mutations reach the
 * protobuf decoders and the conversions directly.
 * Build (not part of CMake; CTest replays the corpus through fuzz/replay.c):
 *   cmake --preset release && cmake --build --preset release   # for build/pb and libaegis_core.a
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Isrc/base \
 *     -Ibuild/pb -Ibuild/generated fuzz/fuzz_grpc.c build/libaegis_core.a build/libaegis_pb.a \
 *     $(pkg-config --libs libmicrohttpd jansson libsodium yaml-0.1 gnutls libnghttp2 zlib \
 *     libprotobuf-c) -llmdb -lm -lpthread -o fuzz_grpc
 *   ./fuzz_grpc -max_len=65536 fuzz/corpus/grpc
 * (the instrumented library: configure a build with CC=clang and
 * CFLAGS=-fsanitize=fuzzer-no-link,address,undefined, AEGIS_WERROR=OFF, and link that one).
 */
#include "ag_base.h"

#include <stdlib.h>
#include <string.h>

#include "api/ag_grpc_api.h"
#include "grpc/ag_grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static size_t nrpcs(void)
{
    size_t n = 0;
    while (ag_grpc_api_path(n))
        n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    if (size >= 2 && data[0] == 0) {
        const char *p = ag_grpc_api_path(data[1] % nrpcs());
        ag_grpc_call_t call = {.path = p,
                               .method = ag_grpc_api_lookup(NULL, p),
                               .remote_addr = "127.0.0.1",
                               .peer_addr = "127.0.0.1",
                               .msg = data + 2,
                               .msg_len = size - 2};
        ag_grpc_api_convert(NULL, &call);
        free(call.resp);
        return 0;
    }
    size_t n = sizeof(preface) - 1;
    uint8_t *buf = malloc(n + size + 1);
    if (!buf)
        return 0;
    memcpy(buf, preface, n);
    if (size)
        memcpy(buf + n, data, size);
    ag_grpc_config_t cfg = {.max_msg = 1u << 20, .max_queue = 8};
    ag_grpc_feed(&cfg, ag_grpc_api_lookup, ag_grpc_api_convert, NULL, buf, n + size);
    free(buf);
    return 0;
}
