"""Benchmark: signed-request verifications per second on one core.

Ours: :class:`distillguard.passport.RequestVerifier` as ``from_settings`` builds it (signature +
passport (cached) + issued-passport check (``RegistrationCache``) + revocation list (SQLite
registry behind the in-memory ``RevocationCache``, refreshed every second) + content digest +
in-process nonce replay cache + scope), on requests signed by
:class:`distillguard.passport.RequestSigner`. Also measured: the same verifier with the
canonical fast path off (``fast_path=False``: full RFC 8941 parser for every request).
Baseline, same requests, same run: the ``http-message-signatures`` package's
``HTTPMessageVerifier`` (signature, created/expires, content digest; it has no replay cache or
passports, so it does less work). Ceiling: bare Ed25519 verification of the same signature
bases with the same key, measured in the same run, which no verifier can beat.

Everything printed is measured in this run: no figure is projected to another load or machine.
Target: ours / ceiling >= 0.8 (the verifier spends at most a fifth of its time outside
Ed25519), and the absolute rate as measured here, with the machine and load average printed.

    .venv/bin/python benchmarks/bench_passport.py [--quick]
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import os
import platform
import shutil
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
    RegistrationCache,
    RequestSigner,
    RequestVerifier,
    RevocationCache,
    SQLitePassportRegistry,
    VerifierPolicy,
    agent_jwk,
)
from distillguard.passport._signatures import parse_signatures, signature_base


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

    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-passport-"))
    atexit.register(shutil.rmtree, tmp, True)  # the passport registry
    registry = SQLitePassportRegistry(tmp / "passports.sqlite")
    registry.record_issued(passport)
    validator = PassportValidator(issuer_keys={issuer_key.kid: issuer_key.private_key.public_key()})

    revocations = RevocationCache(registry, refresh_s=1.0)

    their_verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(
            public_keys={signer.keyid: agent.public_key()}, private_keys={}
        ),
    )

    # the ceiling verifies the very signature bases ours verifies (same lengths, same key)
    bases = []
    for r in ours_requests:
        parsed = parse_signatures(r.header("signature-input") or "", r.header("signature") or "")
        sig1 = parsed["sig1"]
        bases.append((sig1.signature, signature_base(r, sig1.components, sig1.params)))
    pub = agent.public_key()

    def new_verifier(fast_path: bool) -> RequestVerifier:
        return RequestVerifier(
            passports=validator,
            revocations=revocations,
            nonce_cache=MemoryNonceCache(),
            policy=VerifierPolicy(authorities=("api.example.com",)),
            fast_path=fast_path,
            registrations=RegistrationCache(registry),  # as from_settings builds it
        )

    def time_ours(verifier: RequestVerifier, lo: int, hi: int) -> float:
        t0 = time.perf_counter()
        for r in ours_requests[lo:hi]:
            if not verifier.verify(r, body).ok:
                raise SystemExit("ours rejected a valid request")
        return time.perf_counter() - t0

    def time_theirs(lo: int, hi: int) -> float:
        t0 = time.perf_counter()
        for r in their_requests[lo:hi]:
            their_verifier.verify(
                r, expect_tag="web-bot-auth", body=body, max_age=datetime.timedelta(seconds=300)
            )
        return time.perf_counter() - t0

    def time_ed25519(lo: int, hi: int) -> float:
        t0 = time.perf_counter()
        for sig, data in bases[lo:hi]:
            pub.verify(sig, data)
        return time.perf_counter() - t0

    # The machine is shared and its load drifts: the four measurements are interleaved in
    # chunks of 250 requests, so that each repeat's figures (and their ratios) see the same load.
    chunk = 250
    ours, full, theirs, ceiling, to_ceiling, to_baseline = [], [], [], [], [], []
    for _ in range(repeats):
        fast_v, full_v = new_verifier(True), new_verifier(False)
        spent = [0.0, 0.0, 0.0, 0.0]
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            spent[0] += time_ours(fast_v, lo, hi)
            spent[1] += time_ours(full_v, lo, hi)
            spent[2] += time_theirs(lo, hi)
            spent[3] += time_ed25519(lo, hi)
        o_r, f_r, t_r, c_r = (n / x for x in spent)
        ours.append(o_r)
        full.append(f_r)
        theirs.append(t_r)
        ceiling.append(c_r)
        to_ceiling.append(o_r / c_r)
        to_baseline.append(o_r / t_r)
    o, f, t = statistics.median(ours), statistics.median(full), statistics.median(theirs)
    c = statistics.median(ceiling)
    rc, rb = statistics.median(to_ceiling), statistics.median(to_baseline)
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"load average (1, 5, 15 min) at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"requests per repeat: {n}, repeats: {repeats} (medians, one core)")
    print(f"distillguard RequestVerifier:        {o:10,.0f} verifications/s")
    print(f"  same, fast path off (full parser): {f:10,.0f} verifications/s")
    print(f"http-message-signatures baseline:    {t:10,.0f} verifications/s")
    print(f"Ed25519 verify alone (ceiling):      {c:10,.0f} verifications/s")
    print(f"ratio ours / baseline: {rb:.2f}x  (median of per-repeat ratios)")
    print(
        f"ratio ours / ceiling:  {rc:.3f}  (median of per-repeat ratios; target >= 0.80: "
        f"{'met' if rc >= 0.8 else 'NOT met'})"
    )
    print(f"per-repeat ours / ceiling: {', '.join(f'{x:.3f}' for x in to_ceiling)}")
    print(f"non-crypto time per request: {1e6 / o - 1e6 / c:.1f} us (at this run's load)")
    registry.close()


if __name__ == "__main__":
    main()
