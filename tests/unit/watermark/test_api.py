"""``distillguard.watermark``: no secret in reprs (``__all__`` is in test_public_api)."""

from __future__ import annotations

from distillguard.keyring import WatermarkKey


def test_reprs_hide_the_secret(key: WatermarkKey) -> None:
    from distillguard.watermark import CaterConfig, CaterWatermark, KGWConfig, KGWWatermark

    secret_hex = key.secret.hex()
    for obj in (KGWWatermark(KGWConfig(), key=key), CaterWatermark(CaterConfig(), key=key)):
        text = repr(obj) + str(vars(obj) if hasattr(obj, "__dict__") else "")
        assert secret_hex not in text
        assert repr(key.secret) not in repr(obj)
