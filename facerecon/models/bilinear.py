"""FaceScape's bilinear baseline: a Tucker (identity x expression) face model fitted to a scan.

**Model.** The training scans form a full grid (every training subject in every training
expression). Each is registered to one topology (:mod:`facerecon.geometry.register`: a
grid in the crop frame's (x, y), warped through the landmarks and dropped onto the
sheet), giving a data tensor D (3V, I subjects, E expressions). With the mean face m
removed, a higher-order SVD (the left singular vectors U_id, U_exp of D's identity and
expression unfoldings) gives the core C = D x_2 U_id^T x_3 U_exp^T (3V, R, S), and a face

    x(a, b) = m + C x_2 a x_3 b,     a (R,) identity weights, b (S,) expression weights.

Training scan (i, e) is exactly a = U_id[i], b = U_exp[e] at full rank. FaceScape's
released model has R = 50, S = 52; with fewer training subjects or expressions the ranks
are capped at I and E (the model cannot have more components than scans along a mode).
The prior on a and b is the training weights' mean and standard deviation per component.

FaceScape's released file (``facescape_bm_v1.6_*.npz``, :func:`load_released_model`) is
used instead when configured: its core has no separate mean (x = C x_2 a x_3 b), its
expression weights are blendshape weights (neutral = the first one-hot), and its 68
landmarks are vertex indices of its own topology.

**Fit.** A rigid pose and the weights are found by alternation: pose, then the identity
weights with the expression fixed, then the expression weights with the identity fixed,
each weight step a Tikhonov-regularised linear least-squares problem. The first rounds
match the 68 landmarks only (pose by Kabsch); the following rounds match a fixed subset of
model vertices to their closest points among samples of the target sheet (point-to-plane,
pairs farther than a cut-off, with incompatible normals, or outside the crop sphere
ignored; pose by a point-to-plane Gauss-Newton step), keeping a weighted landmark term. The
fitted mesh is posed into the target's crop frame and clipped to the crop sphere, in
millimetres, so the evaluation scores it like every other method's. The model is rebuilt
for every test scan (about 5 s of the 6 s a scan takes on one core for the demo's 30
training scans): the workflow's fit_mesh jobs share no state.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from facerecon.config import FaceScapeBilinearConfig
from facerecon.geometry import register
from facerecon.geometry.align import apply_transform, rigid_fit
from facerecon.geometry.crop import crop_to_sphere
from facerecon.geometry.surface import sample_surface
from facerecon.io import N_LANDMARKS, InputError
from facerecon.models.mesh_inputs import MeshFitInputs, MeshScan

#: Smoothing of the registration's thin-plate spline: only there to keep the spline defined
#: when two reference landmarks coincide (closed eyelids or lips in every training scan).
TPS_SMOOTHING = 1e-3

#: Arrays of FaceScape's released bilinear model (toolkit ``facescape_bm``) read here.
RELEASED_KEYS = ("shape_bm_core", "id_mean", "id_var", "lm_list_v16", "v_indices_front",
                 "fv_indices_front")


@dataclass(frozen=True)
class BilinearModel:
    """x(a, b) = mean + core x_2 a x_3 b over V vertices, millimetres."""

    mean_mm: np.ndarray  #: (V, 3)
    core_mm: np.ndarray  #: (V, 3, R, S)
    faces: np.ndarray  #: (F, 3) int64
    id_mean: np.ndarray  #: (R,) prior mean (and starting point) of the identity weights
    id_std: np.ndarray  #: (R,) prior standard deviation of the identity weights
    exp_mean: np.ndarray  #: (S,) likewise for the expression weights
    exp_std: np.ndarray  #: (S,)
    landmark_ids: np.ndarray  #: (L,) int64 the landmarks (of the 68) the model has
    landmark_corners: np.ndarray  #: (L, 3) int64 vertices each of them is a blend of
    landmark_weights: np.ndarray  #: (L, 3) their barycentric weights
    source: str  #: where the model came from, for messages

    @property
    def ranks(self) -> tuple[int, int]:
        """(R, S): identity and expression components."""
        return self.core_mm.shape[2], self.core_mm.shape[3]

    def vertices(self, id_weights: np.ndarray, exp_weights: np.ndarray) -> np.ndarray:
        """(V, 3) mm for identity weights (R,) and expression weights (S,)."""
        return self.mean_mm + np.einsum("vcrs,r,s->vc", self.core_mm, id_weights, exp_weights)


def hosvd(registered_mm: np.ndarray, id_rank: int, exp_rank: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Higher-order SVD of registered scans ``registered_mm`` (I, E, V, 3) (subject i in
    expression e) with the mean face removed: mean (V, 3), core (V, 3, R, S) and the
    training weights U_id (I, R), U_exp (E, S), ranks capped at ``R = min(id_rank, I)``
    and ``S = min(exp_rank, E)``; scan (i, e) = mean + core x_2 U_id[i] x_3 U_exp[e],
    exactly at full rank."""
    n_id, n_exp, n_vertices, _ = registered_mm.shape
    mean = registered_mm.mean(axis=(0, 1))  # (V, 3)
    data = (registered_mm - mean).reshape(n_id, n_exp, -1)  # (I, E, 3V)
    u_id = _left_singular_vectors(data.reshape(n_id, -1), id_rank)  # (I, R)
    u_exp = _left_singular_vectors(data.transpose(1, 0, 2).reshape(n_exp, -1), exp_rank)
    core = np.einsum("iex,ir,es->xrs", data, u_id, u_exp)  # (3V, R, S)
    return mean, core.reshape(n_vertices, 3, *core.shape[1:]), u_id, u_exp


def tucker_model(registered_mm: np.ndarray, faces: np.ndarray,
                 landmarks: tuple[np.ndarray, np.ndarray, np.ndarray], id_rank: int,
                 exp_rank: int, source: str = "training scans") -> BilinearModel:
    """The :func:`hosvd` model of ``registered_mm`` (I, E, V, 3), its prior the training
    weights' mean and standard deviation per component (a component constant over the
    training scans, such as the one carrying the other mode's mean, keeps its value: its
    deviation is floored at 1e-6 only to stay invertible). ``faces`` (F, 3) and
    ``landmarks`` (the landmark ids (L,), their corners (L, 3) and barycentric weights
    (L, 3)) describe the shared topology."""
    mean, core, u_id, u_exp = hosvd(registered_mm, id_rank, exp_rank)
    return BilinearModel(
        mean_mm=mean, core_mm=core, faces=np.asarray(faces, dtype=np.int64),
        id_mean=u_id.mean(axis=0), id_std=np.maximum(u_id.std(axis=0), 1e-6),
        exp_mean=u_exp.mean(axis=0), exp_std=np.maximum(u_exp.std(axis=0), 1e-6),
        landmark_ids=landmarks[0], landmark_corners=landmarks[1],
        landmark_weights=landmarks[2], source=source)


def _left_singular_vectors(unfolding: np.ndarray, rank: int) -> np.ndarray:
    """The first ``min(rank, n)`` left singular vectors (n, r) of a wide (n, m) matrix, by
    the eigenvectors of its (n, n) Gram matrix (n is a handful of subjects or expressions, m
    hundreds of thousands of coordinates: far cheaper than an SVD), largest first."""
    values, vectors = np.linalg.eigh(unfolding @ unfolding.T)
    return vectors[:, np.argsort(values)[::-1][:min(rank, len(values))]]


def scan_grid(scans: Sequence[MeshScan]) -> tuple[list[str], list[str], np.ndarray]:
    """Subjects, expressions (sorted) and the (I, E) index into ``scans`` of each pair.

    Raises InputError when a pair is missing or repeated: the Tucker model needs every
    training subject in every training expression."""
    pairs = [scan.name.split("/", 1) for scan in scans]
    if any(len(p) != 2 for p in pairs):
        raise InputError("facescape_bilinear: training scans must be named "
                         f"'<subject>/<expression>', got {[s.name for s in scans]}")
    subjects = sorted({p[0] for p in pairs}, key=_natural)
    expressions = sorted({p[1] for p in pairs}, key=_natural)
    index = np.full((len(subjects), len(expressions)), -1, dtype=np.int64)
    for k, (subject, expression) in enumerate(pairs):
        i, e = subjects.index(subject), expressions.index(expression)
        if index[i, e] >= 0:
            raise InputError(f"facescape_bilinear: training scan {subject}/{expression} "
                             "given twice")
        index[i, e] = k
    missing = [f"{subjects[i]}/{expressions[e]}" for i, e in np.argwhere(index < 0)]
    if missing:
        raise InputError("facescape_bilinear: the training scans must cover every subject in "
                         f"every expression (a full grid); missing {missing}")
    return subjects, expressions, index


def _natural(name: str) -> tuple[int, str]:
    """Sort key: a leading number numerically ('2_smile' before '10_dimpler')."""
    head = name.split("_", 1)[0]
    return (int(head), name) if head.isdigit() else (-1, name)


def build_model(scans: Sequence[MeshScan], cfg: FaceScapeBilinearConfig, radius_mm: float
                ) -> BilinearModel:
    """Register the training grid (scans with landmarks) to one grid template and build
    its Tucker model.

    The template's reference landmarks are the training landmarks' mean; it covers the
    crop sphere's disk (``radius_mm``) at ``cfg.grid_spacing_mm``, less the vertices whose
    ray misses the sheet in every training scan; a scan's misses among the rest are filled
    by :func:`~facerecon.geometry.register.fill_misses`."""
    _, _, index = scan_grid(scans)
    reference = np.mean([scan.landmarks_mm for scan in scans], axis=0)
    template = register.grid_template(reference[:, :2], radius_mm, cfg.grid_spacing_mm)
    registered = np.stack([register.register_scan(template, scan.sheet, scan.landmarks_mm,
                                                  TPS_SMOOTHING) for scan in scans])
    blind = [scan.name for scan, r in zip(scans, registered, strict=True)
             if np.isnan(r[:, 2]).all()]
    if blind:
        raise InputError(f"facescape_bilinear: no template vertex lands on the sheet of "
                         f"{blind}; check their landmarks (crop frame, mm)")
    keep = ~np.isnan(registered[..., 2]).all(axis=0)
    template = template.subset(keep)
    registered = np.stack([register.fill_misses(template, r) for r in registered[:, keep]])
    landmarks = register.landmark_barycentrics(template)
    if len(landmarks[0]) < 3:
        raise InputError("facescape_bilinear: fewer than 3 landmarks lie in the region the "
                         "training scans cover; check the training landmarks")
    return tucker_model(registered[index], template.faces, landmarks, cfg.id_rank,
                        cfg.exp_rank, f"{len(scans)} training scans on a "
                        f"{len(template.xy_mm)}-vertex grid, {len(landmarks[0])} landmarks")


def load_released_model(path: str | Path) -> BilinearModel:
    """FaceScape's released bilinear model (toolkit ``facescape_bm``, v1.6 layout), cut to
    its frontal face.

    Read from the ``.npz``: ``shape_bm_core`` (3N, 52, 50), vertices x expression x
    identity (x = core . id . exp, expression 0 the neutral blendshape); ``id_mean`` and
    ``id_var`` (50,), the identity prior; ``lm_list_v16`` (68,) landmark vertices (0-based);
    ``v_indices_front`` (M,) the frontal vertices and ``fv_indices_front`` (F, 3) their
    triangles, indexing ``v_indices_front`` 1-based as FaceScape writes OBJ faces (a file
    with a 0 among them is read as 0-based). The model keeps the frontal vertices and the
    landmark vertices; the expression prior is the neutral one-hot with unit deviations.
    Raises InputError naming the file for a missing array or a wrong shape or index.
    """
    path = Path(path)
    arrays = _released_arrays(path)
    core = arrays["shape_bm_core"]
    if core.ndim != 3 or core.shape[0] % 3 != 0 or not np.issubdtype(core.dtype, np.floating):
        raise InputError(f"{path}: shape_bm_core must be a float array (3 x vertices, "
                         f"expressions, identities), got {core.dtype} {core.shape}")
    n_vertices, n_exp, n_id = core.shape[0] // 3, core.shape[1], core.shape[2]
    for key in ("id_mean", "id_var"):
        if arrays[key].shape != (n_id,):
            raise InputError(f"{path}: {key} must have shape ({n_id},) like shape_bm_core's "
                             f"identity axis, got {arrays[key].shape}")
    if not (arrays["id_var"] > 0).all():
        raise InputError(f"{path}: id_var must be positive")
    landmarks = _indices(arrays, "lm_list_v16", (N_LANDMARKS,), n_vertices, path)
    front = _indices(arrays, "v_indices_front", (-1,), n_vertices, path)
    faces = np.asarray(arrays["fv_indices_front"])
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise InputError(f"{path}: fv_indices_front must be integer triangles (F, 3), got "
                         f"{faces.dtype} {faces.shape}")
    faces = faces.astype(np.int64) - (0 if faces.min() == 0 else 1)
    if faces.min() < 0 or faces.max() >= len(front):
        raise InputError(f"{path}: fv_indices_front out of range for {len(front)} frontal "
                         "vertices")
    kept = np.union1d(front, landmarks)  # model vertices, increasing
    vertex_core = core.reshape(n_vertices, 3, n_exp, n_id)[kept].transpose(0, 1, 3, 2)
    exp_mean = np.zeros(n_exp)
    exp_mean[0] = 1.0
    corners = np.repeat(np.searchsorted(kept, landmarks)[:, None], 3, axis=1)
    ids = np.arange(N_LANDMARKS)
    return BilinearModel(
        mean_mm=np.zeros((len(kept), 3)), core_mm=vertex_core,
        faces=np.searchsorted(kept, front[faces]),
        id_mean=arrays["id_mean"].astype(np.float64),
        id_std=np.sqrt(arrays["id_var"].astype(np.float64)),
        exp_mean=exp_mean, exp_std=np.ones(n_exp), landmark_ids=ids, landmark_corners=corners,
        landmark_weights=np.tile([1.0, 0.0, 0.0], (N_LANDMARKS, 1)), source=str(path))


def _released_arrays(path: Path) -> dict[str, np.ndarray]:
    """The :data:`RELEASED_KEYS` arrays of a released model file, read without unpickling:
    the file also holds pickled dictionaries (``sym_dict``, ``vert_10to16_dict``, ...),
    never touched here, so no code in it runs."""
    if not path.is_file():
        raise InputError(f"{path}: bilinear model file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in RELEASED_KEYS if key not in data.files]
            if missing:
                raise InputError(f"{path}: missing arrays {missing} (not FaceScape's "
                                 "bilinear model layout, facescape_bm v1.6)")
            return {key: data[key] for key in RELEASED_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: not a readable .npz file, truncated or corrupt, or "
                         f"{list(RELEASED_KEYS)} stored as objects ({type(exc).__name__})"
                         ) from None
    except TypeError:  # np.load of a plain .npy gives an array, not an archive
        raise InputError(f"{path}: not an .npz archive (a single .npy array?)") from None


def _indices(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...], n_vertices: int,
             path: Path) -> np.ndarray:
    """``arrays[key]`` as int64 vertex indices of ``shape`` (-1: any length), each in
    [0, n_vertices); InputError naming ``path`` and ``key`` otherwise."""
    values = np.asarray(arrays[key])
    if (values.ndim != len(shape) or not np.issubdtype(values.dtype, np.integer)
            or any(want not in (-1, got) for want, got in zip(shape, values.shape, strict=True))):
        raise InputError(f"{path}: {key} must be integer vertex indices of shape "
                         f"{shape}, got {values.dtype} {values.shape}")
    if values.size and (values.min() < 0 or values.max() >= n_vertices):
        raise InputError(f"{path}: {key} out of range for {n_vertices} vertices")
    return values.astype(np.int64)


@dataclass(frozen=True)
class BilinearFit:
    """One fitted scan."""

    vertices_mm: np.ndarray  #: (V, 3) the fitted model, posed into the target's frame
    id_weights: np.ndarray  #: (R,)
    exp_weights: np.ndarray  #: (S,)
    pose: np.ndarray  #: (4, 4) model frame -> target frame, rigid
    landmark_rms_mm: float  #: RMS distance of the model's landmarks to the target's
    dense_rms_mm: float  #: RMS point-to-plane residual of the last dense round's pairs (NaN
    #: without dense rounds)
    dense_pairs: int  #: pairs used in the last dense round


def fit(model: BilinearModel, target: trimesh.Trimesh, target_landmarks_mm: np.ndarray,
        cfg: FaceScapeBilinearConfig, radius_mm: float) -> BilinearFit:
    """Fit ``model`` to a target sheet (mm, crop frame) with its (68, 3) landmarks: rigid
    pose and weights by alternation, ``cfg.landmark_iterations`` rounds on the landmarks,
    then ``cfg.dense_iterations`` rounds on closest points (see the module docstring). Model
    vertices posed outside the crop sphere of ``radius_mm`` are not matched: the output is
    clipped to it, and the sheet's rim on it would pull them in."""
    target_landmarks_mm = np.asarray(target_landmarks_mm)[model.landmark_ids]
    rng = np.random.default_rng(cfg.seed)
    points, normals = sample_surface(target.vertices, target.faces, cfg.target_samples, rng)
    tree = cKDTree(points)
    referenced = np.unique(model.faces)
    dense = np.sort(rng.choice(referenced, min(cfg.dense_vertices, len(referenced)),
                               replace=False))
    # landmark and dense rows of the model, contracted with the landmark blend
    lm_mean = np.einsum("kj,kjc->kc", model.landmark_weights, model.mean_mm[model.landmark_corners])
    lm_core = np.einsum("kj,kjcrs->kcrs", model.landmark_weights,
                        model.core_mm[model.landmark_corners])
    dense_mean, dense_core = model.mean_mm[dense], model.core_mm[dense]
    cos_max = np.cos(np.radians(cfg.max_normal_angle_deg))
    a, b = model.id_mean.copy(), model.exp_mean.copy()
    pose = np.eye(4)
    rms = np.nan
    n_pairs = 0
    for round_ in range(cfg.landmark_iterations + cfg.dense_iterations):
        lm_model = lm_mean + np.einsum("kcrs,r,s->kc", lm_core, a, b)
        pairs = None
        if round_ < cfg.landmark_iterations:
            pose = rigid_fit(lm_model, target_landmarks_mm)
        else:
            x = dense_mean + np.einsum("vcrs,r,s->vc", dense_core, a, b)
            n_model = _vertex_normals(model, a, b)[dense] @ pose[:3, :3].T
            posed = apply_transform(pose, x)
            distance, nearest = tree.query(posed)
            ok = ((distance < cfg.max_distance_mm)
                  & (np.einsum("ij,ij->i", n_model, normals[nearest]) > cos_max)
                  & (np.einsum("ij,ij->i", posed, posed) < radius_mm**2))
            n_pairs = int(ok.sum())
            if n_pairs < 3:
                raise InputError(f"facescape_bilinear: only {n_pairs} model vertices lie within "
                                 f"{cfg.max_distance_mm} mm of the target sheet after the "
                                 "landmark rounds; check the landmarks")
            pose = _pose_step(posed[ok], points[nearest[ok]], normals[nearest[ok]],
                              apply_transform(pose, lm_model), target_landmarks_mm,
                              cfg.landmark_weight) @ pose
            back = np.linalg.inv(pose)  # target frame -> model frame
            pairs = (ok, apply_transform(back, points[nearest[ok]]),
                     normals[nearest[ok]] @ back[:3, :3].T)
        lm_target = apply_transform(np.linalg.inv(pose), target_landmarks_mm)
        a = _solve(lm_mean, np.einsum("kcrs,s->kcr", lm_core, b), lm_target, pairs, dense_mean,
                   np.einsum("vcrs,s->vcr", dense_core, b), model.id_mean, model.id_std,
                   cfg.id_regularisation, cfg.landmark_weight)
        b = _solve(lm_mean, np.einsum("kcrs,r->kcs", lm_core, a), lm_target, pairs, dense_mean,
                   np.einsum("vcrs,r->vcs", dense_core, a), model.exp_mean, model.exp_std,
                   cfg.exp_regularisation, cfg.landmark_weight)
        if pairs is not None:
            ok, p, n = pairs
            x = dense_mean[ok] + np.einsum("vcrs,r,s->vc", dense_core[ok], a, b)
            rms = float(np.sqrt(np.mean(np.einsum("ij,ij->i", x - p, n) ** 2)))
    lm_model = lm_mean + np.einsum("kcrs,r,s->kc", lm_core, a, b)
    lm_rms = float(np.sqrt(np.mean(np.sum(
        (apply_transform(pose, lm_model) - target_landmarks_mm) ** 2, axis=1))))
    return BilinearFit(apply_transform(pose, model.vertices(a, b)), a, b, pose, lm_rms, rms,
                       n_pairs)


def _pose_step(points: np.ndarray, targets: np.ndarray, normals: np.ndarray,
               landmarks: np.ndarray, landmark_targets: np.ndarray, landmark_weight: float
               ) -> np.ndarray:
    """(4, 4) small rigid motion (one Gauss-Newton step, rotation vector w and translation
    t) minimising mean_p (n_p . (x_p + w x x_p + t - q_p))^2 + landmark_weight *
    mean_k |l_k + w x l_k + t - m_k|^2, for points x (P, 3) paired with targets q (P, 3) of
    normals n (P, 3) and landmarks l (L, 3) with their targets m (L, 3), all in one frame.
    Point-to-plane: the pose slides along the surface freely, so it converges in a few
    rounds where point-to-point pairs (Kabsch) creep."""
    dense_rows = np.concatenate([np.cross(points, normals), normals], axis=1)  # (P, 6)
    dense_rhs = np.einsum("pc,pc->p", normals, targets - points)
    skew = np.zeros((len(landmarks), 3, 3))  # skew[k] @ w = w x l_k
    skew[:, 0, 1], skew[:, 0, 2] = landmarks[:, 2], -landmarks[:, 1]
    skew[:, 1, 0], skew[:, 1, 2] = -landmarks[:, 2], landmarks[:, 0]
    skew[:, 2, 0], skew[:, 2, 1] = landmarks[:, 1], -landmarks[:, 0]
    lm_rows = np.concatenate([skew, np.broadcast_to(np.eye(3), skew.shape)], axis=2)
    design = np.concatenate([dense_rows, lm_rows.reshape(-1, 6)])
    rhs = np.concatenate([dense_rhs, (landmark_targets - landmarks).ravel()])
    weight = np.concatenate([np.full(len(points), 1.0 / len(points)),
                             np.full(3 * len(landmarks), landmark_weight / len(landmarks))])
    step = np.linalg.solve(design.T @ (weight[:, None] * design), design.T @ (weight * rhs))
    out = np.eye(4)
    out[:3, :3] = Rotation.from_rotvec(step[:3]).as_matrix()
    out[:3, 3] = step[3:]
    return out


def _vertex_normals(model: BilinearModel, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals of the model at weights (a, b)."""
    return trimesh.Trimesh(model.vertices(a, b), model.faces, process=False).vertex_normals


def _solve(lm_mean: np.ndarray, lm_basis: np.ndarray, lm_target: np.ndarray,
           pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None, dense_mean: np.ndarray,
           dense_basis: np.ndarray, prior_mean: np.ndarray, prior_std: np.ndarray,
           regularisation: float, landmark_weight: float) -> np.ndarray:
    """Weights w (K,) minimising, in the model frame,

        [mean_p (n_p . (x_p(w) - q_p))^2 + landmark_weight *]  mean_k |l_k(w) - t_k|^2
        + regularisation * |(w - prior_mean) / prior_std|^2

    where l(w) = lm_mean (68, 3) + lm_basis (68, 3, K) w; the dense point-to-plane term
    (bracketed) is there when ``pairs`` = (kept (N,) bool of the dense vertices, targets
    q (P, 3), target normals n (P, 3)) is given, with x(w) = dense_mean + dense_basis w
    ((N, 3), (N, 3, K)). Without it the landmark term has weight 1."""
    rows = [lm_basis.reshape(-1, lm_basis.shape[-1])]
    rhs = [(lm_target - lm_mean).ravel()]
    lm_scale = (landmark_weight if pairs is not None else 1.0) / len(lm_mean)
    scale = [np.full(rows[0].shape[0], lm_scale)]
    if pairs is not None:
        ok, q, n = pairs
        rows.append(np.einsum("pc,pck->pk", n, dense_basis[ok]))
        rhs.append(np.einsum("pc,pc->p", n, q - dense_mean[ok]))
        scale.append(np.full(len(q), 1.0 / len(q)))
    design, target, weight = np.concatenate(rows), np.concatenate(rhs), np.concatenate(scale)
    inv_var = 1.0 / prior_std**2
    normal = design.T @ (weight[:, None] * design) + regularisation * np.diag(inv_var)
    return np.linalg.solve(normal, design.T @ (weight * target)
                           + regularisation * inv_var * prior_mean)


def landmarks_on_sheet(sheet: trimesh.Trimesh, landmarks_mm: np.ndarray) -> np.ndarray:
    """(68, 3) landmarks with z replaced by the sheet's where a ray along -z through their
    (x, y) meets it: the registered scans' landmarks lie on their sheets the same way, so
    the targets the model's landmarks are fitted to are the sheet points it can reach
    (inner-lip landmarks of an open mouth lie behind the filled sheet)."""
    z = register.drop_onto_sheet(sheet, landmarks_mm[:, :2])
    return np.column_stack([landmarks_mm[:, :2], np.where(np.isnan(z), landmarks_mm[:, 2], z)])


def facescape_bilinear_mesh(inputs: MeshFitInputs, cfg: FaceScapeBilinearConfig
                            ) -> tuple[trimesh.Trimesh, list[str]]:
    """The fitted model of one test scan: a mesh in mm in the crop frame, clipped to the
    crop sphere, and a few lines describing the fit. Needs the target's landmarks, and the
    training scans' unless ``cfg.model_file`` names a released model."""

    target = inputs.target
    if target.landmarks_mm is None:
        raise InputError(f"facescape_bilinear: {target.name}: the target's landmarks are "
                         "needed (fit_mesh --landmarks)")
    if cfg.model_file:
        model = load_released_model(cfg.model_file)
        lm_target = target.landmarks_mm
    else:
        unlabelled = [scan.name for scan in inputs.train if scan.landmarks_mm is None]
        if unlabelled:
            raise InputError("facescape_bilinear: the training scans' landmarks are needed "
                             f"(fit_mesh --train-landmarks); missing for {unlabelled}")
        model = build_model(inputs.train, cfg, inputs.radius_mm)
        lm_target = landmarks_on_sheet(target.sheet, target.landmarks_mm)
    result = fit(model, target.sheet, lm_target, cfg, inputs.radius_mm)
    vertices_mm, faces = crop_to_sphere(result.vertices_mm, model.faces, inputs.radius_mm)
    mesh = trimesh.Trimesh(vertices_mm, faces, process=False)
    rotation_deg = np.degrees(np.arccos(np.clip((np.trace(result.pose[:3, :3]) - 1) / 2, -1, 1)))
    ranks = model.ranks
    return mesh, [
        f"model: {model.source}",
        f"ranks: identity {ranks[0]} (configured {cfg.id_rank}), expression {ranks[1]} "
        f"(configured {cfg.exp_rank})",
        f"landmark RMS {result.landmark_rms_mm:.3f} mm, dense point-to-plane RMS "
        f"{result.dense_rms_mm:.3f} mm over {result.dense_pairs} pairs",
        f"pose: rotation {rotation_deg:.3f} deg, translation "
        f"{np.linalg.norm(result.pose[:3, 3]):.3f} mm",
    ]
