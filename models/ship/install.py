"""Shipped folder -> a registered, promoted production version (what ``make model`` runs).

Order matters for the "never moves the pointer on failure" promise: everything that can be
wrong (manifest, hashes, base package, delta, probes) is checked on a rebuilt copy under the
registry's ``.work/`` before ``Registry.register``; the pointer moves only in
``Registry.promote``, after the gate, and is written atomically. Idempotent: with a
production model already registered there is nothing to do (``force`` offers the shipped
model to the gate anyway).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from models.gate import DEFAULT_GATE, Gate, gate_for
from models.registry import Registry, RegistryError, production
from models.ship import manifest as mf
from models.ship.rebuild import check_probes, rebuild_checkpoint

TOLERANCE = 1e-3  # probe probabilities; a faithful rebuild differs by ~1e-6 (float summation order)


@dataclass(frozen=True)
class Installed:
    version: str
    action: str  # "installed" | "nothing to do" | "promoted"
    detail: str


def install(registry_root: Path, shipped: Path, *, force: bool = False,
            tolerance: float = TOLERANCE, gate: Gate | None = DEFAULT_GATE) -> Installed:
    reg = Registry(registry_root)
    m = mf.read_manifest(shipped)
    language = m.get("language", "en")
    if gate is DEFAULT_GATE:
        gate = gate_for(language)
    try:
        ref = production(registry_root, language)
    except RegistryError as e:
        raise mf.ShipError(f"{e} (the registry's production pointer is unreadable; nothing was "
                           "installed)") from e
    if ref is not None and not force:
        return Installed(ref.version, "nothing to do",
                         f"production model ({language}) {ref.version} already in "
                         f"{registry_root} (--force offers the shipped model to the gate anyway)")
    version = m["version"]
    if ref is not None and ref.version == version:
        return Installed(version, "nothing to do", f"{version} is already production")
    existing = reg.versions_dir / version
    work = reg.root / ".work" / f"ship-{version}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        if existing.is_dir():  # registered by an earlier run that stopped before promoting
            mf.verify_files(shipped, m)
            check_probes(existing, m, tolerance, shipped)
            action = "promoted"
        else:
            rebuild_checkpoint(shipped, work, m)
            check_probes(work, m, tolerance, shipped)
            metrics = json.loads((shipped / mf.METRICS).read_text())
            base = m["base"]
            reg.register(work, metrics, version=version, card_extra=(
                f"Installed from the shipped model `{shipped.name}` (fp16 delta over "
                f"{base.get('package') or base.get('model')} {base.get('package_version') or ''}, "
                f"packed {m.get('packed_at')}); rebuild with `python -m models.ship install`."))
            action = "installed"
        promoted = reg.promote(version, gate=gate)
    except RegistryError as e:
        raise mf.ShipError(f"{e}; production unchanged") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not promoted:
        reasons = "; ".join(reg.decisions()[-1].get("reasons", []))
        raise mf.ShipError(f"{version} is registered but the gate refused it ({reasons}); "
                           f"production stays {ref.version if ref else 'unset'} "
                           f"(`yuqing models promote {version} --force` overrides)")
    return Installed(version, action, f"{version} is production in {registry_root}")
