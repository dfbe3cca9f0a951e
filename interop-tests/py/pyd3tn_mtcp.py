"""MTCP with pyD3TN (pyd3tn.mtcp), for interop-tests/tests/pyd3tn_mtcp.rs.

  send PORT N      connect to 127.0.0.1:PORT and send N bundles made by pyD3TN's own encoder
                   (ipn:9.1 -> ipn:2.5, payload "pyd3tn mtcp I"), one CBOR byte string each
  receive PORT N   listen on 127.0.0.1:PORT, accept one connection, receive N bundles with
                   pyD3TN's MTCP reader, decode each with pyD3TN; print one JSON object each
"""

import json
import socket
import sys

from pyd3tn.bundle7 import Bundle, create_bundle7
from pyd3tn.mtcp import MTCPSocket


def send(port, count):
    with socket.create_connection(("127.0.0.1", port)) as sock:
        conn = MTCPSocket(sock, timeout=30)
        for i in range(count):
            bundle = create_bundle7("ipn:9.1", "ipn:2.5", f"pyd3tn mtcp {i}".encode(), lifetime=3600 * 1000)
            conn.send_bundle(bytes(bundle))
        sock.shutdown(socket.SHUT_WR)
        # Wait for the other side to close: everything was read.
        sock.settimeout(30)
        while sock.recv(4096):
            pass


def receive(port, count):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1)
    print(json.dumps({"listening": port}), flush=True)
    server.settimeout(60)
    sock, _ = server.accept()
    conn = MTCPSocket(sock, timeout=60)
    for _ in range(count):
        bundle = Bundle.parse(conn.recv_bundle())
        p = bundle.primary_block
        print(json.dumps({
            "source": str(p.source),
            "destination": str(p.destination),
            "payload": bytes(bundle.payload_block.data).hex(),
        }), flush=True)
    sock.close()
    server.close()


if __name__ == "__main__":
    command, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    {"send": send, "receive": receive}[command](port, count)
