"""The HTML report: self-contained, redacted, abridged; the PDF where WeasyPrint loads."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from distillguard.errors import InputError
from distillguard.evidence import (
    ReportOptions,
    build_report,
    render_html,
    write_pdf,
)
from distillguard.evidence.testing import CAMPAIGN, EMAIL, World
from distillguard.results import read_attribution, read_radioactivity, read_scan
from distillguard.store import open_store


def _lab_files(tmp_path: Path) -> tuple[Path, Path]:
    radio = tmp_path / "radio.json"
    radio.write_bytes(
        orjson.dumps(
            {
                "suspect": "student-1",
                "result": {"method": "kgw-radioactivity", "statistic": 4.2, "p_value": 2e-9},
                "curve": [
                    {"n_scored": 100, "statistic": 1.0, "p_value": 0.1},
                    {"n_scored": 1000, "statistic": 4.2, "p_value": 2e-9},
                ],
            }
        )
    )
    finger = tmp_path / "finger.json"
    finger.write_bytes(
        orjson.dumps(
            {
                "suspect": "student-1",
                "verdict": "teacher-family",
                "alpha": 0.01,
                "ranking": [
                    {"family": "teacher-family", "statistic": 0.8, "p_value": 1e-6},
                    {"family": "other-family", "statistic": 0.1, "p_value": 0.6},
                ],
            }
        )
    )
    return radio, finger


def test_report_is_self_contained_and_redacted(world: World, tmp_path: Path) -> None:
    radio, finger = _lab_files(tmp_path)
    with open_store(world.store_url) as store:
        report = build_report(
            scan=read_scan(world.scan_dir),
            store=store,
            radioactivity=read_radioactivity(radio),
            attribution=read_attribution(finger),
            options=ReportOptions(accounts_shown=4, exchanges_per_campaign=3),
        )
    html = render_html(report)
    # no network: every image is inline, nothing is fetched
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert (
        len(re.findall(r'src="data:image/png;base64,', html)) == 5
    )  # timeline, graph, histogram, radioactivity, attribution
    assert CAMPAIGN in html and "Methods and their limits" in html
    # representative exchanges are redacted by pattern
    assert EMAIL not in html and "[EMAIL]" in html
    # abridged: 4 of 6 accounts listed, with a pointer to the full list in the bundle
    assert "The 4 highest-scored of" in html and "account_scores.parquet" in html
    assert html.count('<td class="mono">acct-c') == 4
    (section,) = report.campaigns
    assert len(section.exchanges) == 3 and section.exchanges[0].account_id == "acct-c0"
    assert section.exchanges[0].redactions == {"email": 1}
    # signals carry a p-value where there is a test
    by_name = {s.name: s for s in section.signals}
    assert by_name["coordinated timing (synchrony)"].p_value == pytest.approx(1e-12)
    elicitation = by_name["elicitation (reasoning or grading requests)"]
    assert elicitation.p_value is not None and elicitation.p_value < 1e-20
    assert "teacher-family" in html and "student-1" in html


def test_report_without_store(sqlite_world: World) -> None:
    report = build_report(scan=read_scan(sqlite_world.scan_dir), store=None)
    html = render_html(report)
    assert "No store was given" in html
    assert report.cited == {CAMPAIGN: ()}


def _weasyprint_works() -> bool:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@pytest.mark.skipif(not _weasyprint_works(), reason="WeasyPrint or Pango cannot be loaded")
def test_pdf(sqlite_world: World, tmp_path: Path) -> None:
    with open_store(sqlite_world.store_url) as store:
        report = build_report(scan=read_scan(sqlite_world.scan_dir), store=store)
    out = tmp_path / "report.pdf"
    write_pdf(render_html(report), out)
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 10_000


def test_bad_options() -> None:
    with pytest.raises(InputError, match="accounts_shown"):
        ReportOptions(accounts_shown=0)
