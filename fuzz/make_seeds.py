#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/<target>/ (committed; run again after a change here).
Hand-made and small: real herald.v1 frames (docs/protocol.md), real HTTP requests, WebSocket
frames masked as a browser sends them."""
import os, struct, shutil

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def write(target, seeds):
    d = os.path.join(root, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())

frames = {
    "subscribe": '{"type":"subscribe","channel":"project.42.items","id":1}',
    "subscribe-since": '{"type":"subscribe","channel":"project.42.items","since":{"epoch":"0k3v9x2m1q8zt","offset":17},"id":1}',
    "subscribe-since-null": '{"type":"subscribe","channel":"public.news","since":null}',
    "subscribe-user": '{"type":"subscribe","channel":"user.alice.notifications","id":7}',
    "unsubscribe": '{"type":"unsubscribe","channel":"project.42.items","id":2}',
    "publish": '{"type":"publish","channel":"project.42.comments","data":{"text":"Looks good"},"id":3}',
    "publish-array": '{"type":"publish","channel":"user.alice.inbox","data":[1,-2.5e3,true,null,"caf\\u00e9 \\ud83d\\ude00"]}',
    "publish-forbidden": '{"type":"publish","channel":"project.42.items","data":"no"}',
    "publish-spaces": '{ "type" : "publish" , "channel" : "project.7.comments" , "data" : { "a" : [ 1 , { } ] } }',
    "publish-escaped-key": '{"type":"publish","channel":"project.1.comments","d\\u0061ta":{"k":"v"},"data":2}',
    "publish-deep": '{"type":"publish","channel":"project.1.comments","data":' + "[" * 64 + "]" * 64 + "}",
    "pong": '{"type":"pong"}',
    "ping": '{"type":"ping"}',
    "unknown": '{"type":"dance","channel":"x"}',
    "bad-channel": '{"type":"subscribe","channel":"bad name"}',
    "bad-id": '{"type":"subscribe","channel":"p","id":-1}',
    "bad-since": '{"type":"subscribe","channel":"p","since":{"epoch":"e","offset":1.5}}',
    "not-object": '[1,2]',
    "bom": '\ufeff{"type":"pong"}',
}
write("client-frame", frames)

http = {
    "get-info": "GET /herald/info HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n\r\n",
    "upgrade": "GET /herald/ws HTTP/1.1\r\nHost: localhost:8080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "Origin: http://localhost:8080\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Protocol: herald.v1\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
               "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\nCookie: cms_session=abc; theme=dark\r\n\r\n",
    "poll": "POST /herald/poll HTTP/1.1\r\nHost: localhost:8080\r\nContent-Type: text/plain;charset=UTF-8\r\n"
            "Origin: http://localhost:8080\r\nContent-Length: 71\r\n\r\n"
            '{"channels":{"project.42.items":{"epoch":"0k3v9x2m1q8zt","offset":20}}}',
    "publish": "POST /herald/publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 55\r\n\r\n"
               '{"channel":"project.42.comments","data":{"t":1},"id":3}',
    "pipelined": "GET /herald/info HTTP/1.1\r\nHost: a\r\n\r\nGET /herald.js HTTP/1.1\r\nHost: a\r\n\r\n"
                 "POST /herald/poll HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "http10": "GET /herald/info HTTP/1.0\r\n\r\n",
    "no-version": "GET /\r\n\r\n",
    "bad-length": "POST /herald/poll HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
    "huge-length": "POST /herald/poll HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "over-limit": "POST /herald/poll HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n{",
    "chunked": "POST /herald/publish HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "folded-header": "GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n",
    "lf-only": "GET /herald/info HTTP/1.1\nHost: a\n\n",
    "duplicate-headers": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
    "partial": "POST /herald/poll HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n{\"cha",
}
write("http-request", http)

def ws_frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d", rsv=0):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126: head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536: head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else: head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + mask + masked

sub = frames["subscribe"].encode()
ws = {
    "text-subscribe": ws_frame(1, sub),
    "text-publish": ws_frame(1, frames["publish"].encode()),
    "text-two": ws_frame(1, sub) + ws_frame(1, frames["pong"].encode()),
    "text-fragmented": ws_frame(1, sub[:10], fin=False) + ws_frame(0, sub[10:30], fin=False) + ws_frame(0, sub[30:]),
    "ping-in-fragments": ws_frame(1, sub[:10], fin=False) + ws_frame(9, b"hb") + ws_frame(0, sub[10:]),
    "text-126": ws_frame(1, b'{"type":"publish","channel":"p","data":"' + b"x" * 200 + b'"}'),
    "text-64k-len": ws_frame(1, b"a" * 70000)[:200],
    "ping": ws_frame(9, b"keepalive"),
    "pong": ws_frame(10, b""),
    "close-1000": ws_frame(8, struct.pack("!H", 1000) + b"bye"),
    "close-bad-utf8": ws_frame(8, struct.pack("!H", 1000) + b"\xc3\x28"),
    "close-1byte": ws_frame(8, b"\x03"),
    "binary": ws_frame(2, b"\x00\x01\x02"),
    "unmasked": bytes([0x81, len(sub)]) + sub,
    "rsv-set": ws_frame(1, sub, rsv=0x40),
    "bad-utf8-text": ws_frame(1, b"\"\xff\""),
    "utf8-text": ws_frame(1, '"caf\u00e9 \U0001F600"'.encode()),
    "control-fragmented": ws_frame(9, b"x", fin=False),
    "continuation-first": ws_frame(0, b"abc"),
    "opcode-reserved": ws_frame(3, b"abc"),
}
write("websocket-frames", ws)

polls = {
    "doc": '{"channels":{"project.42.items":{"epoch":"0k3v9x2m1q8zt","offset":20},"user.alice.notifications":null},\n "timeout":25000}',
    "first": '{"channels":{"public.news":null},"timeout":0}',
    "no-timeout": '{"channels":{"a":{"epoch":"e","offset":0}}}',
    "huge-timeout": '{"channels":{},"timeout":18230571291595767808}',
    "max-timeout": '{"channels":{},"timeout":18446744073709551615}',
    "float-timeout": '{"channels":{},"timeout":1e3}',
    "negative-timeout": '{"channels":{},"timeout":-1}',
    "bad-cursor": '{"channels":{"a":{"epoch":1,"offset":2},"b":[],"c":{"epoch":"e","offset":-1},"d":{"epoch":"e","offset":18446744073709551616}}}',
    "channels-array": '{"channels":["a"]}',
    "empty": '{}',
    "not-object": '"channels"',
    "escaped-names": '{"channels":{"caf\\u00e9":null,"a\\"b":null,"":null}}',
    "duplicate": '{"channels":{"a":null,"a":{"epoch":"e","offset":1}},"timeout":5,"timeout":7}',
}
write("longpoll-body", polls)

json = {
    "object": '{"item":4242,"field":"title","by":"alice","rev":17,"tags":["a","b"],"ok":true,"none":null}',
    "array": '[1,-2.5e3,0,"\\u00e9\\ud83d\\ude00",{"k":[{},[]]},false]',
    "utf8": '"caf\u00e9 \u20ac \U0001F600"',
    "numbers": '[-0.0E+00,1e308,1.7976931348623157e308,0.0000001e315,18446744073709551616,-9223372036854775809]',
    "overflow": '1.7976931348623159e308',
    "depth-64": "[" * 64 + "]" * 64,
    "depth-65": "[" * 65 + "]" * 65,
    "depth-objects": '{"a":' * 64 + "1" + "}" * 64,
    "escapes": '"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\uDBFF\\uDFFF"',
    "lone-surrogate": '"\\ud83d\\u0041"',
    "bad-utf8": b'"\xed\xa0\x80 \xc0\x80 \xf4\x90\x80\x80"',
    "whitespace": ' \n\t\r[ 1 , 2 ]\r\n ',
    "bom": '\ufeff1',
    "nul": b'1\x00x',
    "literals": '[true,false,null]',
    "trailing": '[1]x',
}
write("json-check", json)

auth = {
    "exact": "project.42.items\nproject.42.items\nalice",
    "star": "project.*.items\nproject.42.items\n",
    "double-star": "project.**\nproject.42.items.x\nbob",
    "principal": "user.{principal}.**\nuser.alice.notifications\nalice",
    "principal-anon": "user.{principal}.**\nuser.alice.notifications\n",
    "principal-other": "user.{principal}\nuser.bob\nalice",
    "star-only": "*\nnews\n",
    "double-star-only": "**\na.b.c\n",
    "double-star-middle": "a.**.c\na.b.c\n",
    "empty": "\n\n",
    "dots": "a..b\na..b\na",
    "trailing-dot": "a.\na.\n",
    "principal-dot": "user.{principal}.x\nuser.a.b.x\na.b",
}
write("authorizer-patterns", auth)
