"""Seed the verifier fuzz targets' corpora from the real fixtures (run from fuzz/: python3 seed_verifier.py).

quote: the dcap-qvl sample quotes (TDX v4, v5, SGX v3), the two hex quotes and the quotes of both dstack
GetQuote answers; pck_chain: the PEM chains inside them; event_log: both dstack GetQuote answers (digests
given, digests empty) and their bare event logs; collateral: the three collateral files; quote_document:
both dstack answers, a binary, an SGX and a hex quote. Writes fuzz/corpus/<target>/ (git-ignored).
"""
import base64
import json
import os

F = "../tests/fixtures/tdx/"


def write(target, name, data):
    d = f"corpus/{target}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/{name}", "wb") as f:
        f.write(data)


def read(path):
    with open(F + path, "rb") as f:
        return f.read()


quotes = {n: read(n) for n in ["tdx_quote", "tdx_quote_outdated", "sgx_quote"]}
for n in ["tdx-quote.hex", "quote-from-tappd.hex"]:
    t = read(n).decode().strip()
    quotes[n] = bytes.fromhex(t[2:] if t.startswith("0x") else t)
dstack = ["quote-report.json", "tdx-measurement-getquote.json"]
for n in dstack:
    quotes[n] = bytes.fromhex(json.loads(read("dstack/" + n))["quote"])
for n, q in quotes.items():
    write("quote", n, q)
    i = q.find(b"-----BEGIN CERTIFICATE-----")
    if i >= 0:
        write("pck_chain", n, q[i:].split(b"\x00")[0])
for n in dstack:
    raw = read("dstack/" + n)
    write("event_log", n, raw)
    write("event_log", n + ".log", json.loads(raw)["event_log"].encode())
    write("quote_document", n, raw)
for n in ["tdx_quote_collateral.json", "tdx_quote_outdated_collateral.json", "sgx_quote_collateral.json"]:
    write("collateral", n, read(n))
for n in ["tdx_quote", "sgx_quote", "tdx-quote.hex"]:
    write("quote_document", n, read(n))

# gpu_evidence: the first byte picks the reader (0 SPDM report, 1 chain, 2 nvidia_payload JSON, 3 RIM).
N = F + "../nvidia/"
with open(N + "hopperAttestationReport.txt") as f:
    report = bytes.fromhex(f.read().strip())
with open(N + "hopper_cert_chain_case1.txt", "rb") as f:
    chain = f.read()
with open(N + "vbios_rim_96005E0001_PROD.swidtag", "rb") as f:
    rim = f.read()
payload = {
    "nonce": report[4:36].hex(),
    "evidence_list": [{"evidence": base64.b64encode(report).decode(),
                       "certificate": base64.b64encode(chain).decode(), "arch": "HOPPER"}],
    "arch": "HOPPER",
}
write("gpu_evidence", "report", b"\x00" + report)
write("gpu_evidence", "chain", b"\x01" + chain)
write("gpu_evidence", "payload", b"\x02" + json.dumps(payload).encode())
write("gpu_evidence", "rim", b"\x03" + rim)
