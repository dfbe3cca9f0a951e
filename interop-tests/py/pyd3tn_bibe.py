"""BIBE with pyD3TN (pyd3tn.bundle7.BibeProtocolDataUnit) over MTCP, for
interop-tests/tests/pyd3tn_bibe.rs.

  exchange OUR_PORT LISTEN_PORT PDUS
      listen on 127.0.0.1:LISTEN_PORT (our node dials it as ipn:9.0); connect to our node's
      MTCP port and send three carrier bundles ipn:9.0 -> ipn:2.0 made by pyD3TN, each a BIBE
      PDU around a bundle ipn:9.1 -> ipn:2.5: without custody (transmission ID 0, record type
      64443), with custody (ID 77, type 64443), with custody in the compatibility code (ID 78,
      type 7). Then read what our node sends: print one JSON line per custody signal (decoded
      with cbor2: pyD3TN has no signal decoder) and per BIBE PDU (decoded with pyD3TN's own
      parse_administrative_record and Bundle.parse), until signals covering 77 and 78 and PDUS
      PDUs were seen.
"""

import json
import socket
import sys

import cbor2
from pyd3tn.bundle7 import BibeProtocolDataUnit, Bundle, BundleProcFlag, create_bundle7
from pyd3tn.mtcp import MTCPSocket


def carrier(tid, compat, text):
    inner = create_bundle7("ipn:9.1", "ipn:2.5", text.encode(), lifetime=3600 * 1000)
    record = BibeProtocolDataUnit(inner, transmission_id=tid,
                                  retransmission_time=(0 if tid == 0 else 2**40), compatibility=compat)
    return bytes(create_bundle7("ipn:9.0", "ipn:2.0", record.data, lifetime=3600 * 1000,
                                flags=BundleProcFlag.ADMINISTRATIVE_RECORD))


def exchange(our_port, listen_port, pdus):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(1)
    print(json.dumps({"listening": listen_port}), flush=True)
    with socket.create_connection(("127.0.0.1", our_port)) as sock:
        conn = MTCPSocket(sock, timeout=30)
        conn.send_bundle(carrier(0, False, "bibe plain"))
        conn.send_bundle(carrier(77, False, "bibe custody 77"))
        conn.send_bundle(carrier(78, True, "bibe custody 78"))
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(30)
        while sock.recv(4096):
            pass
    server.settimeout(60)
    sock, _ = server.accept()
    conn = MTCPSocket(sock, timeout=60)
    signalled, seen_pdus = set(), 0
    while not ({77, 78} <= signalled and seen_pdus >= pdus):
        bundle = Bundle.parse(conn.recv_bundle())
        p = bundle.primary_block
        data = bytes(bundle.payload_block.data)
        record_type, content = cbor2.loads(data)
        if record_type in (4, 8):
            disposition, ranges = content
            for first, count in ranges:
                signalled.update(range(first, first + count))
            print(json.dumps({"signal": {"record_type": record_type, "disposition": disposition,
                                         "ranges": ranges, "source": str(p.source),
                                         "destination": str(p.destination)}}), flush=True)
        else:
            parsed = Bundle.parse_administrative_record(data)
            pdu = parsed["record_data"]
            inner = Bundle.parse(pdu["encapsulated_bundle"])
            seen_pdus += 1
            print(json.dumps({"pdu": {
                "record_type": parsed["record_type"],
                "transmission_id": pdu["transmission_id"],
                "retransmission_time": pdu["retransmission_time"],
                "carrier_source": str(p.source),
                "carrier_destination": str(p.destination),
                "source": str(inner.primary_block.source),
                "destination": str(inner.primary_block.destination),
                "payload": bytes(inner.payload_block.data).hex(),
            }}), flush=True)
    sock.close()
    server.close()


if __name__ == "__main__":
    exchange(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
