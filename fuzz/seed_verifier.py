"""Seed the verifier fuzz targets' corpora from the real fixtures (run from fuzz/: python3 seed_verifier.py).

quote: the dcap-qvl sample quotes (TDX v4, v5, SGX v3), the two hex quotes and the quotes of both dstack
GetQuote answers; pck_chain: the PEM chains inside them; event_log: both dstack GetQuote answers (digests
given, digests empty) and their bare event logs; collateral: the three collateral files; quote_document:
both dstack answers, a binary, an SGX and a hex quote. Writes fuzz/corpus/<target>/ (git-ignored).
"""
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
