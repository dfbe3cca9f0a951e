"""TCPCLv3 with pyD3TN (pyd3tn.tcpcl), for interop-tests/tests/pyd3tn_tcpcl3.rs.

  send PORT N      connect to 127.0.0.1:PORT as ipn:9.0 with pyD3TN's TCPCLConnection (contact
                   header exchange, one DATA_SEGMENT per bundle, SHUTDOWN at the end) and send N
                   bundles made by pyD3TN's own encoder (ipn:9.1 -> ipn:2.5, "pyd3tn tcpcl I")
  receive PORT N   listen on 127.0.0.1:PORT as ipn:3.0, accept one connection, exchange contact
                   headers with pyD3TN's encoder and decoder, read N bundles with pyD3TN's segment
                   header decoder, decode each with pyD3TN; print one JSON object each
"""

import json
import socket
import sys

from pyd3tn.bundle7 import Bundle, create_bundle7
from pyd3tn.helpers import sock_recv_raw
from pyd3tn.sdnv import sdnv_decode
from pyd3tn.tcpcl import (
    TCPCLConnection,
    decode_tcpcl_bundle_segment_header,
    decode_tcpcl_contact_header,
    serialize_tcpcl_contact_header,
)


def send(port, count):
    with TCPCLConnection("ipn:9.0", "127.0.0.1", port, timeout=30) as conn:
        for i in range(count):
            bundle = create_bundle7("ipn:9.1", "ipn:2.5", f"pyd3tn tcpcl {i}".encode(), lifetime=3600 * 1000)
            conn.send_bundle(bytes(bundle))


def read_contact_header(sock):
    """Reads exactly one contact header (magic, version, flags, keepalive, SDNV, EID)."""
    raw = sock_recv_raw(sock, 9, 60)
    while raw[-1] & 0x80:
        raw += sock_recv_raw(sock, 1, 60)
    eid_length, _ = sdnv_decode(raw[8:])
    raw += sock_recv_raw(sock, eid_length, 60)
    return decode_tcpcl_contact_header(raw)


def receive(port, count):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1)
    print(json.dumps({"listening": port}), flush=True)
    server.settimeout(60)
    sock, _ = server.accept()
    sock.sendall(serialize_tcpcl_contact_header("ipn:3.0"))
    header = read_contact_header(sock)
    print(json.dumps({"peer": header["eid"], "version": header["version"], "flags": header["flags"]}), flush=True)
    for _ in range(count):
        raw = sock_recv_raw(sock, 2, 60)
        while raw[-1] & 0x80:
            raw += sock_recv_raw(sock, 1, 60)
        _, _, length = decode_tcpcl_bundle_segment_header(raw)
        bundle = Bundle.parse(sock_recv_raw(sock, length, 60))
        p = bundle.primary_block
        print(json.dumps({
            "source": str(p.source),
            "destination": str(p.destination),
            "payload": bytes(bundle.payload_block.data).hex(),
        }), flush=True)
    sock.sendall(b"\x50")
    sock.close()
    server.close()


if __name__ == "__main__":
    command, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    {"send": send, "receive": receive}[command](port, count)
