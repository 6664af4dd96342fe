"""The detector configuration the settings describe (production, backtests and benchmarks
take the same object, so offline sweeps and the stream detector agree)."""
from __future__ import annotations

from services.alerts import lifecycle, model
from services.core.config import Settings

# No new episode on a series for this long after one resolved (event time): one page per
# story, not one per wave of it. 48 h is what every leave-one-series-out fold of the NAB
# benchmark chose from {12, 24, 36, 48, 72} h (docs/alerts.md).
REARM_S = 48 * 3600


def bands_for(fire_score: float) -> lifecycle.Bands:
    return (("critical", max(90.0, fire_score)), ("warning", max(75.0, fire_score)),
            ("info", fire_score))


def detector_config(settings: Settings) -> model.DetectorConfig:
    return model.DetectorConfig(window_s=settings.alert_window_s,
                                min_count=settings.alert_min_count,
                                warmup_hours=settings.alert_warmup_hours,
                                life=lifecycle.LifecycleConfig(
                                    bands=bands_for(settings.alert_fire_score),
                                    rearm_windows=REARM_S // settings.alert_window_s))
