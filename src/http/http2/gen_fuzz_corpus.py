#!/usr/bin/env python3
"""Writes the seed corpus of http2_frame_fuzz (test/fuzz/corpus/http2_frame_fuzz/).

Each file is the bytes a peer sends after the client preface: the fuzz target feeds them to a
server codec (after the preface) and to a client codec that has one request open on stream 1.
Run from the repository root: python3 src/http/http2/gen_fuzz_corpus.py
"""
import os
import struct

OUT = "test/fuzz/corpus/http2_frame_fuzz"

DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONT = range(10)
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8


def frame(ftype, flags, stream, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, stream & 0x7FFFFFFF) + payload


def lit(name, value):  # literal without indexing, new name (RFC 7541 6.2.2)
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def get(authority=b"example.com", path_index=0x84):
    return b"\x82\x86" + bytes([path_index]) + b"\x01" + bytes([len(authority)]) + authority


def post(authority=b"example.com"):
    return b"\x83\x86\x84\x01" + bytes([len(authority)]) + authority


settings = frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100) + struct.pack(">HI", 4, 65535))
seeds = {
    "settings_only": settings,
    "get": settings + frame(HEADERS, END_HEADERS | END_STREAM, 1, get()),
    "post_body_trailers": settings
    + frame(HEADERS, END_HEADERS, 1, post() + lit(b"content-type", b"application/grpc"))
    + frame(DATA, 0, 1, b"hello")
    + frame(DATA, PADDED, 1, b"\x03abc\x00\x00\x00")
    + frame(HEADERS, END_HEADERS | END_STREAM, 1, lit(b"grpc-status", b"0")),
    "continuation": settings
    + frame(HEADERS, 0, 1, get())
    + frame(CONT, 0, 1, lit(b"x-a", b"1"))
    + frame(CONT, END_HEADERS, 1, lit(b"x-b", b"2")),
    "ping_window_rst": settings
    + frame(PING, 0, 0, b"12345678")
    + frame(WINDOW, 0, 0, struct.pack(">I", 1 << 20))
    + frame(HEADERS, END_HEADERS, 1, post())
    + frame(WINDOW, 0, 1, struct.pack(">I", 1000))
    + frame(RST, 0, 1, struct.pack(">I", 8)),
    "many_streams_goaway": settings
    + b"".join(frame(HEADERS, END_HEADERS | END_STREAM, i, get()) for i in range(1, 20, 2))
    + frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 16))
    + frame(GOAWAY, 0, 0, struct.pack(">II", 19, 0)),
    # For the client codec: a server's SETTINGS, a 100, a 200 with a body and trailers.
    "response": settings
    + frame(SETTINGS, ACK, 0)
    + frame(HEADERS, END_HEADERS, 1, b"\x08\x03100")
    + frame(HEADERS, END_HEADERS, 1, b"\x88" + lit(b"content-length", b"5"))
    + frame(DATA, 0, 1, b"hel")
    + frame(DATA, END_STREAM, 1, b"lo"),
    "response_trailers_reset": settings
    + frame(HEADERS, END_HEADERS, 1, b"\x88")
    + frame(DATA, 0, 1, b"x" * 100)
    + frame(HEADERS, END_HEADERS | END_STREAM, 1, lit(b"grpc-status", b"13"))
    + frame(RST, 0, 1, struct.pack(">I", 0)),
    "bad_frames": settings
    + frame(DATA, 0, 0, b"x")
    + frame(WINDOW, 0, 0, struct.pack(">I", 0))
    + frame(SETTINGS, 0, 1, b""),
    "rapid_reset": settings
    + b"".join(frame(HEADERS, END_HEADERS | END_STREAM, i, get()) + frame(RST, 0, i, struct.pack(">I", 8))
               for i in range(1, 40, 2)),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {OUT}")
