"""The run's figures, written as PNG files (matplotlib, no display needed)."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def learning_curves(history, path):
    """Loss and RMSE (on the [-1, 1] scale) per epoch: stage 1 train and validation, stage 2 train
    (and a tuning run's scored period).
    history: dict of equal-length columns 'stage', 'loss', 'rmse', 'val_loss', 'val_rmse', and
    for an ensemble 'member' (its members' epochs in turn; each member is drawn from epoch 1)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    stage = np.asarray(history["stage"])
    member = np.asarray(history.get("member", np.ones(len(stage), int)))
    n = len(np.unique(member))
    suffix = f" (each of {n} members)" if n > 1 else ""
    for ax, key in zip(axes, ("loss", "rmse")):
        for color, (s, series, label) in enumerate((
                (1, key, "stage 1 train"), (1, f"val_{key}", "stage 1 validation"),
                (2, key, "stage 2 train (full training set)"),
                (2, f"val_{key}", "stage 2 tuning period (--tune_days)"))):
            for j, number in enumerate(np.unique(member)):
                mine = member == number
                m = (stage[mine] == s) & np.isfinite(np.asarray(history[series], float)[mine])
                if m.any():
                    epoch = np.arange(1, mine.sum() + 1)
                    ax.plot(epoch[m], np.asarray(history[series])[mine][m], color=f"C{color}",
                            alpha=1.0 if j == 0 else 0.45, label=None if j else label + suffix)
        ax.set(xlabel="epoch", ylabel=f"{key} (scaled data)", yscale="log")
        ax.legend()
    save(fig, path)


def error_maps(y_true, y_pred, flow_names, title, path):
    """True, predicted and error maps of each flow at one slot. y: (H, W, F)."""
    nf = y_true.shape[-1]
    fig, axes = plt.subplots(nf, 3, figsize=(9, 3.2 * nf * y_true.shape[0] / y_true.shape[1] / 1.6
                                            + 1), squeeze=False)
    for k in range(nf):
        vmax = max(y_true[..., k].max(), y_pred[..., k].max())
        err = y_pred[..., k] - y_true[..., k]
        elim = max(np.abs(err).max(), 1e-9)
        for ax, img, name, kw in (
                (axes[k, 0], y_true[..., k], "true", dict(vmin=0, vmax=vmax, cmap="viridis")),
                (axes[k, 1], y_pred[..., k], "predicted", dict(vmin=0, vmax=vmax, cmap="viridis")),
                (axes[k, 2], err, "error (pred - true)", dict(vmin=-elim, vmax=elim, cmap="RdBu_r"))):
            im = ax.imshow(img, **kw)
            ax.set_title(f"{flow_names[k]}: {name}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    save(fig, path)


def region_series(y_true, y_pred, labels, flow_names, title, path):
    """True vs predicted series of each flow over the test period. y: (n, F)."""
    nf = y_true.shape[-1]
    fig, axes = plt.subplots(nf, 1, figsize=(12, 2.6 * nf), sharex=True, squeeze=False)
    x = np.arange(len(y_true))
    for k in range(nf):
        ax = axes[k, 0]
        ax.plot(x, y_true[:, k], lw=1, label="true")
        ax.plot(x, y_pred[:, k], lw=1, label="ST-ResNet")
        ax.set_ylabel(flow_names[k])
        ax.legend(loc="upper right")
    step = max(1, len(x) // 10)
    axes[-1, 0].set_xticks(x[::step], labels[::step], rotation=30, fontsize=8)
    fig.suptitle(title)
    save(fig, path)


def error_vs_horizon(rows, path):
    """RMSE per step ahead of the model fed its own predictions, HA and the last known frame."""
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [r["step"] for r in rows]
    for key, label in (("rmse", "ST-ResNet (recursive)"), ("rmse_ha", "HA"),
                       ("rmse_last", "last known frame")):
        ax.plot(steps, [r[key] for r in rows], marker="o", label=label)
    ax.set(xlabel="steps ahead", ylabel="test RMSE", xticks=steps)
    ax.legend()
    save(fig, path)


def forecast_maps(y, flow_names, title, path):
    """Maps of each flow of one forecast slot. y: (H, W, F)."""
    nf = y.shape[-1]
    fig, axes = plt.subplots(1, nf, figsize=(3.2 * nf, 4), squeeze=False)
    for k in range(nf):
        im = axes[0, k].imshow(y[..., k], vmin=0, cmap="viridis")
        axes[0, k].set_title(flow_names[k], fontsize=9)
        axes[0, k].set_xticks([])
        axes[0, k].set_yticks([])
        fig.colorbar(im, ax=axes[0, k], fraction=0.046)
    fig.suptitle(title)
    save(fig, path)
