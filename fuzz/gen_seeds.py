#!/usr/bin/env python3
"""Writes the small seed corpus in fuzz/seeds/<target>/ (checked in; re-run to refresh).

Files named regression-* in those folders are inputs that once failed; this script leaves
them alone.

Each seed is a well-formed input of the shape its target expects (see the doc comment at
the top of each fuzz_targets/*.rs), so libFuzzer starts from valid RTMP/AMF0/FLV/JSON
instead of having to discover the formats from nothing. Standard library only.
"""
import hashlib
import hmac
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


# --- AMF0 -----------------------------------------------------------------------------
def a_num(n):
    return b"\x00" + struct.pack(">d", n)


def a_bool(b):
    return b"\x01" + bytes([1 if b else 0])


def a_sstr(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def a_str(s):
    return b"\x02" + a_sstr(s)


def a_props(props):
    return b"".join(a_sstr(k) + v for k, v in props) + b"\x00\x00\x09"


def a_obj(props):
    return b"\x03" + a_props(props)


def a_ecma(props):
    return b"\x08" + struct.pack(">I", len(props)) + a_props(props)


def a_strict(items):
    return b"\x0a" + struct.pack(">I", len(items)) + b"".join(items)


def a_date(ms, tz):
    return b"\x0b" + struct.pack(">dh", ms, tz)


def a_long(s):
    b = s.encode()
    return b"\x0c" + struct.pack(">I", len(b)) + b


def a_xml(s):
    b = s.encode()
    return b"\x0f" + struct.pack(">I", len(b)) + b


def a_typed(cls, props):
    return b"\x10" + a_sstr(cls) + a_props(props)


NULL = b"\x05"
UNDEF = b"\x06"

CONNECT = a_str("connect") + a_num(1) + a_obj([
    ("app", a_str("live")),
    ("flashVer", a_str("FMLE/3.0 (compatible; FMSc/1.0)")),
    ("tcUrl", a_str("rtmp://127.0.0.1:1935/live?vhost=v1")),
    ("fpad", a_bool(False)),
    ("capabilities", a_num(15)),
    ("audioCodecs", a_num(4071)),
    ("videoCodecs", a_num(252)),
    ("objectEncoding", a_num(0)),
])
PUBLISH = a_str("publish") + a_num(5) + NULL + a_str("stream?token=x") + a_str("live")
PLAY = a_str("play") + a_num(4) + NULL + a_str("stream") + a_num(-2000) + a_bool(True)
METADATA = a_str("@setDataFrame") + a_str("onMetaData") + a_ecma([
    ("duration", a_num(0)),
    ("width", a_num(1280)),
    ("height", a_num(720)),
    ("videocodecid", a_num(7)),
    ("encoder", a_str("Lavf60")),
])


# --- chunk stream ---------------------------------------------------------------------
def basic(fmt, csid):
    if csid < 64:
        return bytes([(fmt << 6) | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    v = csid - 64
    return bytes([(fmt << 6) | 1, v & 0xFF, v >> 8])


def u24(v):
    return struct.pack(">I", v)[1:]


def chunk_msg(csid, ts, type_id, msid, payload, chunk=128):
    ext = ts >= 0xFFFFFF
    out = basic(0, csid) + u24(min(ts, 0xFFFFFF)) + u24(len(payload)) + bytes([type_id])
    out += struct.pack("<I", msid)
    if ext:
        out += struct.pack(">I", ts)
    parts = [payload[i:i + chunk] for i in range(0, len(payload), chunk)] or [b""]
    out += parts[0]
    for p in parts[1:]:
        out += basic(3, csid) + (struct.pack(">I", ts) if ext else b"") + p
    return out


# header for chunk_decoder: 16 MiB limits, 64 streams, initial chunk size 128, split seed
CD_HEADER = bytes([7, 64, 7]) + struct.pack(">I", 128) + b"\x35\x17"


def set_chunk_size(n):
    return chunk_msg(2, 0, 1, 0, struct.pack(">I", n))


# --- FLV ------------------------------------------------------------------------------
def flv_tag(t, ts, payload):
    return (bytes([t]) + u24(len(payload)) + u24(ts & 0xFFFFFF) + bytes([ts >> 24]) + b"\x00\x00\x00"
            + payload + struct.pack(">I", 11 + len(payload)))


FLV_HEADER = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"

# --- handshake ------------------------------------------------------------------------
FP_KEY = b"Genuine Adobe Flash Player 001"


def c1(digest_schema=None, fill=0x5A):
    p = bytearray(bytes([(i * 31 + fill) & 0xFF for i in range(1536)]))
    p[0:4] = b"\x00\x00\x00\x00"
    if digest_schema is None:
        p[4:8] = b"\x00\x00\x00\x00"
        return bytes(p)
    p[4:8] = bytes([9, 0, 124, 2])
    base = 8 if digest_schema == "digest-first" else 772
    at = base + 4 + sum(p[base:base + 4]) % 728
    d = hmac.new(FP_KEY, bytes(p[:at]) + bytes(p[at + 32:]), hashlib.sha256).digest()
    p[at:at + 32] = d
    return bytes(p)


def seeds():
    s = {}
    s["chunk_decoder"] = {
        "connect": CD_HEADER + chunk_msg(3, 0, 20, 0, CONNECT),
        "set_chunk_size_then_media": CD_HEADER + set_chunk_size(60) + b"".join(
            chunk_msg(4, ts, 8, 1, b"\xaf\x01" + bytes(range(40)), 60) for ts in (0, 23, 46)),
        "extended_timestamp": CD_HEADER + chunk_msg(6, 0x01000000, 9, 1, bytes(300)),
        "fmt123": CD_HEADER + chunk_msg(4, 1000, 8, 1, b"a" * 32) + basic(2, 4) + u24(20) + b"b" * 32
        + basic(3, 4) + b"c" * 32 + basic(1, 4) + u24(20) + u24(5) + b"\x09" + b"d" * 5,
        "big_csids": CD_HEADER + chunk_msg(64, 1, 18, 1, METADATA) + chunk_msg(65599, 2, 9, 1, b"\x17\x00\x00\x00\x00"),
        "abort": CD_HEADER + chunk_msg(4, 0, 8, 1, bytes(200))[:140]
        + chunk_msg(2, 0, 2, 0, struct.pack(">I", 4)) + chunk_msg(4, 0, 8, 1, b"xy"),
    }
    s["chunk_roundtrip"] = {
        "mixed": b"\x00\x7f\x01" + b"".join(
            struct.pack(">HIBB", csid, ts, t, sel) for csid, ts, t, sel in
            [(4, 0, 8, 0x61), (4, 20, 8, 0x61), (4, 40, 8, 0x61), (6, 0xFFFFFF, 9, 0xc1), (6, 0x1000020, 9, 0xc1),
             (1, 5, 20, 0x20), (400, 7, 18, 0xe2)]),
        "small_chunks": b"\x00\x00\x03" + struct.pack(">HIBB", 3, 1, 20, 0x81) * 3,
    }
    s["amf0"] = {
        "connect": CONNECT,
        "publish": PUBLISH,
        "play": PLAY,
        "metadata": METADATA,
        "types": a_strict([a_num(float("nan")), a_date(1.7e12, -60), a_long("long"), a_xml("<a/>"), UNDEF,
                           b"\x07\x00\x01", b"\x0d", a_typed("flex.Msg", [("k", NULL)])]),
        "avmplus": NULL + b"\x11\x06\x05hi",
        "ecma_open_end": b"\x08\x00\x00\x00\x01" + a_sstr("k") + a_num(1) + b"\x00\x00",
    }
    s["messages"] = {
        "set_chunk_size": b"\x01" + struct.pack(">I", 4096),
        "ping": b"\x04" + struct.pack(">HI", 6, 1234),
        "set_buffer_length": b"\x04" + struct.pack(">HII", 3, 1, 3000),
        "peer_bw": b"\x06" + struct.pack(">IB", 2500000, 2),
        "aggregate": b"\x16" + flv_tag(9, 1000, b"\x17\x01abc") + flv_tag(8, 1040, b"\xaf\x01de"),
        "command": b"\x14" + PUBLISH,
        "command_amf3": b"\x11\x00" + CONNECT,
        "tcurl": b"\x00rtmp://[::1]:1936/live/sub?vhost=v1&token=x",
        "stream": b"\x00stream.flv?vhost=v2",
    }
    s["handshake"] = {
        "simple": b"\x03" + c1(),
        "digest_first": b"\x03" + c1("digest-first"),
        "key_first": b"\x03" + c1("key-first", 0x11),
        "http_garbage": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 1537)[:1537],
    }
    avc_seq = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x04abcd\x01\x00\x02ef"
    s["flv_demuxer"] = {
        "h264_aac": FLV_HEADER + flv_tag(18, 0, METADATA[16:]) + flv_tag(9, 0, avc_seq)
        + flv_tag(8, 0, b"\xaf\x00\x12\x10") + flv_tag(9, 0, b"\x17\x01\x00\x00\x00key")
        + flv_tag(8, 23, b"\xaf\x01aac") + flv_tag(9, 0x01000000, b"\x27\x01\x00\x00\x00inter"),
        "enhanced": FLV_HEADER + flv_tag(9, 0, b"\x90hvc1conf") + flv_tag(9, 33, b"\x93hvc1frame")
        + flv_tag(8, 0, b"\x90Opusconf"),
        "offset": b"FLV\x01\x01\x00\x00\x00\x0d\xaa\xbb\xcc\xdd\x00\x00\x00\x00" + flv_tag(9, 1, b"\x12x"),
    }
    s["coworker_document"] = {
        "doc": b'{"revision":7,"coworkers":["10.0.0.1:1985","[fd00::2]:1985","origin-2.peers:1985"],'
        b'"advertise":{"rtmp":"203.0.113.5:1935","http":"203.0.113.5:8080"}}',
        "doc_null": b'{"revision":1,"coworkers":[],"advertise":null}',
        "owner": b'{"code":0,"data":{"query":{"ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live",'
        b'"stream":"test"},"origin":{"ip":"127.0.0.1","port":21936,"vhost":"__defaultVhost__",'
        b'"api":"127.0.0.1:21986","routers":["127.0.0.1:21986"],"http":"127.0.0.1:8080"}}}',
        "not_owned": b'{"code":0,"data":{"query":{},"origin":null}}',
        "hosts": b"10.0.0.1:1985\n[::1]:1985\nname.example:80\n",
    }
    return s


def main():
    total = 0
    for target, files in seeds().items():
        d = os.path.join(ROOT, target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            total += len(data)
    print(f"wrote {sum(len(f) for f in seeds().values())} seeds, {total} bytes, to {ROOT}")


if __name__ == "__main__":
    main()
