"""Benchmark: signed-request verifications per second on one core.

Ours: :class:`distillguard.passport.RequestVerifier` (signature + passport (cached) + revocation
lookup in SQLite + content digest + in-process nonce replay cache + scope), on requests signed
by :class:`distillguard.passport.RequestSigner`. Baseline, same requests, same run: the
``http-message-signatures`` package's ``HTTPMessageVerifier`` (signature, created/expires,
content digest; it has no replay cache or passports, so it does less work).

    .venv/bin/python benchmarks/bench_passport.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageVerifier, algorithms
from http_message_signatures.resolvers import MappingKeyResolver

from distillguard.passport import (
    HttpRequest,
    MemoryNonceCache,
    PassportIssuer,
    PassportValidator,
    RequestSigner,
    RequestVerifier,
    SQLitePassportRegistry,
    VerifierPolicy,
    agent_jwk,
)


class _IssuerKey:
    def __init__(self) -> None:
        self.private_key = Ed25519PrivateKey.generate()
        self.kid = "issuer-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats")
    args = parser.parse_args()
    n = 1000 if args.quick else 5000
    repeats = 3 if args.quick else 5

    issuer_key = _IssuerKey()
    agent = Ed25519PrivateKey.generate()
    passport = PassportIssuer(key=issuer_key).issue(
        account_id="acct_1", org_id="org_1", agent_public_jwk=agent_jwk(agent.public_key())
    )
    signer = RequestSigner(passport=passport.token, agent_key=agent, validity_s=300)
    url = "https://api.example.com/v1/chat/completions"
    body = b'{"model": "small-1", "messages": [{"role": "user", "content": "hello there"}]}'
    base = [("content-type", "application/json"), ("host", "api.example.com")]
    signed = [
        dict(base + list(signer.signed_headers("POST", url, base, body).items())) for _ in range(n)
    ]
    ours_requests = [HttpRequest.from_url("POST", url, headers=h) for h in signed]
    their_requests = [httpx.Request("POST", url, headers=h, content=body) for h in signed]

    tmp = Path(tempfile.mkdtemp())
    registry = SQLitePassportRegistry(tmp / "passports.sqlite")
    registry.record_issued(passport)
    validator = PassportValidator(issuer_keys={issuer_key.kid: issuer_key.private_key.public_key()})

    def run_ours() -> float:
        verifier = RequestVerifier(
            passports=validator,
            revocations=registry,
            nonce_cache=MemoryNonceCache(),
            policy=VerifierPolicy(authorities=("api.example.com",)),
        )
        t0 = time.perf_counter()
        for r in ours_requests:
            if not verifier.verify(r, body).ok:
                raise SystemExit("ours rejected a valid request")
        return n / (time.perf_counter() - t0)

    their_verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(
            public_keys={signer.keyid: agent.public_key()}, private_keys={}
        ),
    )

    def run_theirs() -> float:
        t0 = time.perf_counter()
        for r in their_requests:
            their_verifier.verify(
                r, expect_tag="web-bot-auth", body=body, max_age=datetime.timedelta(seconds=300)
            )
        return n / (time.perf_counter() - t0)

    sig = agent.sign(body)
    pub = agent.public_key()

    def run_ed25519() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            pub.verify(sig, body)
        return n / (time.perf_counter() - t0)

    ours, theirs, ceiling = [], [], []
    for _ in range(repeats):
        ours.append(run_ours())
        theirs.append(run_theirs())
        ceiling.append(run_ed25519())
    o, t = statistics.median(ours), statistics.median(theirs)
    c = statistics.median(ceiling)
    print(f"requests per repeat: {n}, repeats: {repeats} (medians, one core)")
    print(f"distillguard RequestVerifier:      {o:10,.0f} verifications/s")
    print(f"http-message-signatures baseline:  {t:10,.0f} verifications/s")
    print(f"Ed25519 verify alone (ceiling):    {c:10,.0f} verifications/s")
    print(f"ours / Ed25519 ceiling: {o / c:.2f}")
    print(
        f"ratio ours / baseline: {o / t:.2f}x   "
        f"target >= 10,000/s: {'met' if o >= 10_000 else 'NOT met'}"
    )
    registry.close()


if __name__ == "__main__":
    main()
