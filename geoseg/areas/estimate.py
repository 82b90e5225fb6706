"""Error-adjusted areas and accuracies with 95 % confidence intervals from a stratified random sample
(Olofsson et al. 2014, "Good practices for estimating area and assessing accuracy of land change",
Remote Sensing of Environment 148:42-57, eqs. 4-11), strata = map classes.

Notation: W_i map (stratum) proportion of class i, n_ij sample units of map class i with reference class
j, n_i. = Σ_j n_ij. Then p̂_ij = W_i n_ij / n_i. (eq. 9), overall accuracy Ô = Σ_j p̂_jj, user's
accuracy Û_i = p̂_ii / p̂_i., producer's accuracy P̂_j = p̂_jj / p̂_.j (eqs. 1-3 on p̂), their variances
(eqs. 5-7), the area of class j Â_j = A p̂_.j with S(p̂_.j) = sqrt(Σ_i (W_i p̂_ij − p̂_ij²)/(n_i. − 1))
(eqs. 10-11), and 95 % intervals ± 1.96 S.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.areas.maps import ClassCounts, ClassMap, SampleError
from geoseg.io.staging import atomic_write_text

Z95 = 1.96
SAMPLE_METHOD = "stratified random sample, estimators of Olofsson et al. (2014) eqs. 4-11"
APPROX_METHOD = (
    "APPROXIMATION from a model validation confusion matrix, not from a sample of this map: it assumes "
    "the map's errors follow the validation data's; no confidence intervals"
)


@dataclass
class AreaEstimate:
    """Mapped and error-adjusted area per class, accuracies, all with standard errors (NaN if unknown)."""

    classes: list[int]
    names: list[str]
    method: str
    total_area_m2: float
    mapped_area_m2: np.ndarray
    proportions: np.ndarray  # p̂_ij, rows = map class, columns = reference class
    area_m2: np.ndarray
    area_se_m2: np.ndarray
    user_accuracy: np.ndarray
    user_accuracy_se: np.ndarray
    producer_accuracy: np.ndarray
    producer_accuracy_se: np.ndarray
    overall_accuracy: float
    overall_accuracy_se: float
    sample_counts: np.ndarray | None = None  # n_ij
    notes: list[str] = field(default_factory=list)
    z: float = Z95
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def approximate(self) -> bool:
        return self.sample_counts is None

    def ci(self, se: np.ndarray | float) -> np.ndarray | float:
        """Half-width of the 95 % confidence interval."""
        return self.z * se

    def per_class(self) -> list[dict[str, Any]]:
        rows = []
        for i, (k, name) in enumerate(zip(self.classes, self.names, strict=True)):
            a, se = self.area_m2[i], self.area_se_m2[i]
            rows.append(
                {
                    "class": k,
                    "name": name,
                    "mapped_area_m2": _num(self.mapped_area_m2[i]),
                    "mapped_proportion": _num(self.mapped_area_m2[i] / self.total_area_m2),
                    "area_m2": _num(a),
                    "area_se_m2": _num(se),
                    "area_ci95_m2": _num(self.ci(se)),
                    "area_ci95_low_m2": _num(a - self.ci(se)),
                    "area_ci95_high_m2": _num(a + self.ci(se)),
                    "proportion": _num(a / self.total_area_m2),
                    "user_accuracy": _num(self.user_accuracy[i]),
                    "user_accuracy_ci95": _num(self.ci(self.user_accuracy_se[i])),
                    "producer_accuracy": _num(self.producer_accuracy[i]),
                    "producer_accuracy_ci95": _num(self.ci(self.producer_accuracy_se[i])),
                    "n_map": None if self.sample_counts is None else int(self.sample_counts[i].sum()),
                    "n_reference": None
                    if self.sample_counts is None
                    else int(self.sample_counts[:, i].sum()),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "approximation": self.approximate,
            "confidence": 0.95,
            "z": self.z,
            "total_area_m2": _num(self.total_area_m2),
            "overall_accuracy": _num(self.overall_accuracy),
            "overall_accuracy_ci95": _num(self.ci(self.overall_accuracy_se)),
            "classes": self.per_class(),
            "error_matrix": {
                "rows": "map class",
                "columns": "reference class",
                "classes": self.classes,
                "names": self.names,
                "area_proportions": [[_num(v) for v in row] for row in self.proportions],
                "sample_counts": None if self.sample_counts is None else self.sample_counts.tolist(),
            },
            "notes": self.notes,
            "inputs": self.inputs,
        }

    def csv(self) -> str:
        rows = self.per_class()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else v for k, v in r.items()})
        return buf.getvalue()

    def table(self) -> str:
        """Plain-text table: areas in ha (m² for maps under 10 ha) with 95 % intervals, accuracies."""
        ha = self.total_area_m2 >= 1e5
        unit, f = ("ha", 1e-4) if ha else ("m2", 1.0)
        w = max([len(n) for n in self.names] + [5])
        head = (
            f"{'class':<{w}} {'mapped ' + unit:>14} {'adjusted ' + unit:>14} {'± 95% ' + unit:>12}"
            f" {'user acc.':>13} {'producer acc.':>14} {'n':>5}"
        )
        lines = [head]
        for r in self.per_class():
            ci = r["area_ci95_m2"]
            lines.append(
                f"{r['name']:<{w}} {r['mapped_area_m2'] * f:>14,.2f} {r['area_m2'] * f:>14,.2f} "
                f"{'-' if ci is None else format(ci * f, ',.2f'):>12} "
                f"{_pm(r['user_accuracy'], r['user_accuracy_ci95']):>13} "
                f"{_pm(r['producer_accuracy'], r['producer_accuracy_ci95']):>14} "
                f"{'-' if r['n_map'] is None else r['n_map']:>5}"
            )
        lines.append(
            f"overall accuracy {_pm(_num(self.overall_accuracy), _num(self.ci(self.overall_accuracy_se)))}"
            f"   total {self.total_area_m2 * f:,.2f} {unit}"
        )
        if self.approximate:
            lines.append(
                "APPROXIMATION (validation confusion matrix, not a sample of this map): no intervals"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def write(self, out: str | os.PathLike[str]) -> tuple[Path, Path]:
        """``out`` (JSON) and the per-class table next to it (``.csv``), each written atomically."""
        out = Path(out)
        csv_path = out.with_suffix(".csv")
        atomic_write_text(out, json.dumps(self.to_dict(), indent=2) + "\n")
        atomic_write_text(csv_path, self.csv())
        return out, csv_path


def _num(v: float | np.ndarray | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _pm(v: float | None, ci: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if ci is None else f"{v:.3f}±{ci:.3f}"


def stratified_estimate(
    strata_area_m2: Mapping[int, float],
    map_class: Sequence[int] | np.ndarray,
    ref_class: Sequence[int] | np.ndarray,
    names: Mapping[int, str] | None = None,
    z: float = Z95,
    strata_pixels: Mapping[int, int] | None = None,
) -> AreaEstimate:
    """Olofsson et al. (2014) estimates from a stratified random sample with strata = map classes.

    ``strata_area_m2``: mapped area of every map class (the strata); ``map_class`` / ``ref_class``: the
    map and reference label of every sample unit. Reference classes absent from the map are allowed (their
    mapped area is 0). With ``strata_pixels``, a stratum whose every pixel is in the sample (a census)
    adds no sampling variance and may hold a single unit.
    """
    map_class = np.asarray(map_class, dtype=np.int64)
    ref_class = np.asarray(ref_class, dtype=np.int64)
    strata = sorted(k for k, a in strata_area_m2.items() if a > 0)
    extra = sorted(set(np.unique(map_class).tolist()) - set(strata))
    if extra:
        raise SampleError(f"samples of map classes {extra}, which have no mapped area")
    classes = sorted(set(strata) | set(np.unique(ref_class).tolist()))
    idx = {k: i for i, k in enumerate(classes)}
    kn = len(classes)
    total = float(sum(strata_area_m2[k] for k in strata))
    mapped = np.array([float(strata_area_m2.get(k, 0.0)) for k in classes])
    w = mapped / total
    n = np.zeros((kn, kn), dtype=np.int64)
    np.add.at(
        n,
        (
            np.array([idx[k] for k in map_class.tolist()], dtype=np.int64),
            np.array([idx[k] for k in ref_class.tolist()], dtype=np.int64),
        ),
        1,
    )
    ni = n.sum(1)
    census = np.array(
        [strata_pixels is not None and 0 < strata_pixels.get(k, 0) <= ni[i] for i, k in enumerate(classes)]
    )
    nm = names or {}
    for k in strata:
        if ni[idx[k]] < 2 and not (census[idx[k]] and ni[idx[k]] == 1):
            raise SampleError(
                f"map class {k} ({nm.get(k, k)}) has {ni[idx[k]]} labelled sample(s); "
                "estimates need >= 2 per stratum"
            )
    has = ni > 0
    q = np.divide(n, ni[:, None], out=np.zeros((kn, kn)), where=has[:, None])  # n_ij / n_i.
    p = w[:, None] * q  # eq. 9
    # 1 / (n_i. - 1) in every variance term; 0 for census strata (no sampling variance)
    inv_dof = np.where(census | (ni < 2), 0.0, 1.0 / np.maximum(ni - 1, 1))
    col = p.sum(0)
    area = total * col
    se_p = np.sqrt(((w[:, None] * p - p**2) * inv_dof[:, None]).sum(0))  # eq. 10
    diag = np.diag(p)
    u = np.diag(q).copy()
    u[~has] = np.nan
    u_se = np.sqrt(u * (1 - u) * inv_dof)  # eq. 6
    u_se[~has] = np.nan
    oa = float(diag.sum())
    oa_se = float(np.sqrt(np.nansum(np.where(has, w**2 * u * (1 - u) * inv_dof, 0.0))))  # eq. 5
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = np.where(col > 0, diag / col, np.nan)
    pa_se = np.full(kn, np.nan)
    for j in range(kn):  # eq. 7 with N_i. proportional to W_i (the scale cancels)
        if col[j] <= 0:
            continue
        first = w[j] ** 2 * (1 - pa[j]) ** 2 * u[j] * (1 - u[j]) * inv_dof[j] if has[j] else 0.0
        others = sum(w[i] ** 2 * q[i, j] * (1 - q[i, j]) * inv_dof[i] for i in range(kn) if i != j and has[i])
        pa_se[j] = np.sqrt((first + pa[j] ** 2 * others) / col[j] ** 2)
    return AreaEstimate(
        classes=classes,
        names=[nm.get(k, f"class {k}") for k in classes],
        method=SAMPLE_METHOD,
        total_area_m2=total,
        mapped_area_m2=mapped,
        proportions=p,
        area_m2=area,
        area_se_m2=total * se_p,
        user_accuracy=u,
        user_accuracy_se=u_se,
        producer_accuracy=pa,
        producer_accuracy_se=pa_se,
        overall_accuracy=oa,
        overall_accuracy_se=oa_se,
        sample_counts=n,
        z=z,
    )


def estimate_from_sample(
    cmap: ClassMap, counts: ClassCounts, sample_path: str | os.PathLike[str], skip_unlabelled: bool = False
) -> AreaEstimate:
    """Read the labelled sample GeoPackage of ``cmap`` and estimate areas and accuracies."""
    from geoseg.areas.samples import read_labelled_sample

    s = read_labelled_sample(sample_path, cmap, counts, skip_unlabelled=skip_unlabelled)
    names = {k: cmap.name(k) for k in set(counts.classes) | set(s.ref_class.tolist())}
    est = stratified_estimate(counts.area_m2, s.map_class, s.ref_class, names, strata_pixels=counts.pixels)
    est.inputs = {
        "map": str(cmap.path),
        "samples": str(sample_path),
        "n_labelled": int(len(s.ref_class)),
        "design": s.design,
    }
    if s.unlabelled:
        est.notes.append(f"{s.unlabelled} unlabelled sample(s) left out (--skip-unlabelled)")
    return est


def approximate_from_confusion(
    counts: ClassCounts,
    confusion: np.ndarray,
    confusion_classes: Sequence[int],
    names: Mapping[int, str] | None = None,
) -> AreaEstimate:
    """An APPROXIMATION without a sample of this map: ``confusion[t, p]`` (pixels of true class ``t``
    predicted ``p``, e.g. from ``geoseg evaluate``) gives P(reference j | map i), applied to this map's
    class proportions. Valid only as far as this map's errors resemble the validation data's; no CIs."""
    confusion = np.asarray(confusion, dtype=np.float64)
    pos = {k: i for i, k in enumerate(confusion_classes)}
    missing = [k for k in counts.classes if k not in pos]
    nm = names or {}
    if missing:
        raise SampleError(
            "the confusion matrix has no column for map class(es) "
            + ", ".join(f"{k} ({nm.get(k, k)})" for k in missing)
        )
    classes = sorted(set(counts.classes) | set(confusion_classes))
    idx = {k: i for i, k in enumerate(classes)}
    kn = len(classes)
    total = counts.total_area_m2
    mapped = np.array([counts.area_m2.get(k, 0.0) for k in classes])
    w = mapped / total
    q = np.zeros((kn, kn))
    for k in counts.classes:
        column = confusion[:, pos[k]]
        if column.sum() <= 0:
            raise SampleError(
                f"the confusion matrix has no pixel predicted as map class {k} ({nm.get(k, k)})"
            )
        for t, kt in enumerate(confusion_classes):
            q[idx[k], idx[kt]] += column[t] / column.sum()
    p = w[:, None] * q
    col = p.sum(0)
    diag = np.diag(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(w > 0, np.diag(q), np.nan)
        pa = np.where(col > 0, diag / col, np.nan)
    nan = np.full(kn, np.nan)
    return AreaEstimate(
        classes=classes,
        names=[nm.get(k, f"class {k}") for k in classes],
        method=APPROX_METHOD,
        total_area_m2=total,
        mapped_area_m2=mapped,
        proportions=p,
        area_m2=total * col,
        area_se_m2=nan.copy(),
        user_accuracy=u,
        user_accuracy_se=nan.copy(),
        producer_accuracy=pa,
        producer_accuracy_se=nan.copy(),
        overall_accuracy=float(diag.sum()),
        overall_accuracy_se=float("nan"),
        sample_counts=None,
    )


def read_confusion(path: str | os.PathLike[str], cmap: ClassMap) -> tuple[np.ndarray, list[int]]:
    """The confusion matrix of a ``geoseg evaluate --out scores.json`` file, its classes matched to the
    map's by name (case-insensitive) or id. Checkpoints hold per-class IoU only, which cannot adjust areas."""
    path = Path(path)
    if not path.is_file():
        raise SampleError(f"{path}: no such file")
    if path.suffix == ".pt":
        raise SampleError(
            f"{path}: a checkpoint records per-class IoU only, which cannot correct areas; score the model "
            "with `geoseg evaluate ... --out scores.json` on labelled data and pass that file"
        )
    try:
        cm = json.loads(path.read_text())["confusion_matrix"]
        counts = np.asarray(cm["counts"], dtype=np.float64)
        cls_names = [str(c) for c in cm["classes"]]
        rows = cm.get("rows", "truth")
    except (ValueError, KeyError, TypeError):
        raise SampleError(f"{path}: not a geoseg evaluate JSON with a confusion_matrix") from None
    if counts.shape != (len(cls_names), len(cls_names)):
        raise SampleError(f"{path}: confusion matrix shape {counts.shape} does not match its classes")
    if rows != "truth":
        counts = counts.T
    by_name = {v.casefold(): k for k, v in cmap.names.items()}
    ids = []
    for name in cls_names:
        k = by_name.get(name.casefold())
        if k is None and name.isdigit():
            k = int(name)
        if k is None:
            raise SampleError(
                f"{path}: class {name!r} of the confusion matrix is not a class of {cmap.path.name}"
            )
        ids.append(k)
    return counts, ids
