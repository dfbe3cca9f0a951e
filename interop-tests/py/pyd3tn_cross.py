#!/usr/bin/env python3
"""Cross-check BPv7 bundles with pyD3TN, µD3TN's independent Python codec.

  decode            read hex bundles (one per line) on stdin; print one JSON object per line
                    with the fields pyD3TN decodes, and whether each block's CRC (recomputed by
                    pyD3TN's own encoder) matches the one carried
  generate N SEED   make N random bundles with pyD3TN's serialize_bundle7; print one JSON object
                    per line: the hex bundle and the fields pyD3TN put in it
  admin-decode      read hex administrative-record payloads on stdin; print what pyD3TN's
                    parse_administrative_record makes of each
  admin-generate N SEED
                    make N random status reports and BIBE PDUs with pyD3TN; print each payload
                    in hex with the fields pyD3TN put in it

Driven by interop-tests/tests/pyd3tn_cross.rs.
"""
import json
import random
import sys
from datetime import timedelta

from pyd3tn.bundle7 import (DTN_EPOCH, EID, BibeProtocolDataUnit, Bundle, BundleStatusReport, CRCType,
                            create_bundle7)


def fields(bundle):
    p = bundle.primary_block
    blocks = []
    crc_ok = True
    if p.crc_type != CRCType.NONE and p.crc_provided is not None:
        crc_ok &= p.calculate_crc() == p.crc_provided
    for b in list(bundle.blocks) + [bundle.payload_block]:
        blocks.append({
            "number": int(b.block_number),
            "type": int(b.block_type),
            "flags": int(b.block_proc_flags),
            "crc_type": int(b.crc_type),
            "data": bytes(b.data).hex(),
        })
        if b.crc_type != CRCType.NONE and b.crc_provided is not None:
            crc_ok &= b.calculate_crc() == b.crc_provided
    fragment = None
    if p.fragment_offset is not None:
        fragment = [int(p.fragment_offset), int(p.total_payload_length)]
    return {
        "destination": str(p.destination),
        "source": str(p.source),
        "report_to": str(p.report_to),
        "creation_time": int(p.creation_time[0]),
        "sequence": int(p.creation_time[1]),
        "lifetime": int(p.lifetime),
        "flags": int(p.bundle_proc_flags),
        "primary_crc_type": int(p.crc_type),
        "fragment": fragment,
        "blocks": sorted(blocks, key=lambda b: b["number"]),
        "crc_ok": bool(crc_ok),
    }


def decode():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            out = fields(Bundle.parse(bytes.fromhex(line)))
        except Exception as e:  # report, do not stop: the Rust side names the bundle
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=False)


def random_eid(rng):
    if rng.random() < 0.7:
        return f"ipn:{rng.randint(1, 2**32 - 2)}.{rng.randint(0, 2**32 - 1)}"
    node = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789.-") for _ in range(rng.randint(1, 16)))
    demux = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789/-") for _ in range(rng.randint(0, 16)))
    return f"dtn://{node}/{demux}"


# RFC 9171 §4.2.3 flag bits (pyD3TN's enum has report-deletion at 0x400000, so raw ints are used).
REPORT_FLAGS = [0x004000, 0x010000, 0x020000, 0x040000]


def generate(count, seed):
    rng = random.Random(seed)
    for _ in range(count):
        ms = rng.randint(1, 2**40)
        created = DTN_EPOCH + timedelta(milliseconds=ms)
        flags = 0
        for bit in [0x04, 0x20, 0x40] + REPORT_FLAGS:
            if rng.random() < 0.3:
                flags |= bit
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        fragment = rng.random() < 0.2
        offset = rng.randint(0, 10**6) if fragment else None
        total = offset + len(payload) + rng.randint(0, 1000) if fragment else None
        if fragment:
            flags = (flags | 0x01) & ~0x04
        kwargs = dict(
            report_to_eid=random_eid(rng),
            crc_type_primary=rng.choice([CRCType.CRC16, CRCType.CRC32]),
            creation_timestamp=created,
            sequence_number=rng.randint(0, 2**63),
            lifetime=rng.randint(1, 10**7),
            flags=flags,
            fragment_offset=offset,
            total_adu_length=total,
            hop_limit=rng.choice([None, rng.randint(1, 255)]),
            hop_count=rng.randint(0, 255),
            bundle_age=rng.choice([None, rng.randint(0, 10**6)]),
            previous_node_eid=rng.choice([None, f"ipn:{rng.randint(1, 2**32 - 2)}.0"]),
            crc_type_canonical=rng.choice([CRCType.NONE, CRCType.CRC16, CRCType.CRC32]),
        )
        bundle = create_bundle7(random_eid(rng), random_eid(rng), payload, **kwargs)
        out = fields(bundle)
        # The creation time as pyD3TN encodes it, from the datetime we gave.
        assert out["creation_time"] == ms, (out["creation_time"], ms)
        out["hex"] = bytes(bundle).hex()
        print(json.dumps(out))


def status_fields(record_data):
    info, reason, source, creation = record_data[:4]
    return {
        "kind": "status",
        "asserted": [bool(i[0]) for i in info],
        "times": [i[1] if len(i) > 1 else None for i in info],
        "reason": int(reason),
        "source": str(source),
        "creation": [int(creation[0]), int(creation[1])],
        "fragment": [int(record_data[4]), int(record_data[5])] if len(record_data) > 4 else None,
    }


def admin_decode():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            parsed = Bundle.parse_administrative_record(bytes.fromhex(line))
            record_type, data = parsed["record_type"], parsed["record_data"]
            if record_type == 1:
                out = status_fields(data)
            else:
                out = {
                    "kind": "bibe",
                    "record_type": int(record_type),
                    "transmission_id": int(data["transmission_id"]),
                    "retransmission_time": int(data["retransmission_time"]),
                    "bundle": bytes(data["encapsulated_bundle"]).hex(),
                }
        except Exception as e:
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out))


def admin_generate(count, seed):
    rng = random.Random(seed)
    for _ in range(count):
        if rng.random() < 0.5:
            infos = 0
            for bit in [0x01, 0x04, 0x08, 0x10]:
                if rng.random() < 0.5:
                    infos |= bit
            fragment = rng.random() < 0.3
            seconds = rng.randint(1, 2**32)
            record = BundleStatusReport(
                infos,
                rng.randint(0, 16),
                EID(f"ipn:{rng.randint(1, 2**32 - 2)}.{rng.randint(0, 2**32 - 1)}"),
                [rng.randint(0, 2**40), rng.randint(0, 2**32)],
                fragment_offset=rng.randint(0, 10**6) if fragment else None,
                total_payload_length=rng.randint(0, 10**6) if fragment else None,
                time=(DTN_EPOCH + timedelta(seconds=seconds)) if rng.random() < 0.5 else None,
            )
            out = status_fields(record.record_data)
        else:
            inner = create_bundle7("ipn:1.1", "ipn:2.1", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),
                                   creation_timestamp=DTN_EPOCH + timedelta(milliseconds=rng.randint(1, 2**40)))
            compat = rng.random() < 0.5
            record = BibeProtocolDataUnit(inner, transmission_id=rng.randint(0, 2**40),
                                          retransmission_time=rng.randint(0, 2**40), compatibility=compat)
            out = {
                "kind": "bibe",
                "record_type": 7 if compat else 64443,
                "transmission_id": record.record_data[0],
                "retransmission_time": record.record_data[1],
                "bundle": bytes(inner).hex(),
            }
        out["hex"] = record.data.hex()
        print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1:2] == ["decode"]:
        decode()
    elif sys.argv[1:2] == ["generate"] and len(sys.argv) == 4:
        generate(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1:2] == ["admin-decode"]:
        admin_decode()
    elif sys.argv[1:2] == ["admin-generate"] and len(sys.argv) == 4:
        admin_generate(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)
