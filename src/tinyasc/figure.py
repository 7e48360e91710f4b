"""Figure 1 of the paper: 2-D t-SNE of stage-2 feature maps, once from frequency-wise statistics (mean
and std over channels and time per frequency bin) and once from channel-wise ones (over frequency
and time per channel), coloured by device. Also a number: how well k-NN recovers the device from each."""
import numpy as np
import torch

from tinyasc.checkpoint import load_checkpoint
from tinyasc.data.cache import FeatureCache
from tinyasc.data.tau import read_split
from tinyasc.errors import TinyascError
from tinyasc.evaluate import batch_logits


@torch.no_grad()
def stage_statistics(model, features, stage=1, batch_size=64):
    """(frequency-wise [mean, std] (N, 2F'), channel-wise [mean, std] (N, 2C)) of the output of
    `model.stages[stage]` (0-based; stage 1 is the paper's stage 2) for features (N, F, T)."""
    freq, chan = [], []

    def capture(module, inputs, x):  # x: (B, C, F, T)
        freq.append(torch.cat([x.mean(dim=(1, 3)), x.std(dim=(1, 3))], 1))
        chan.append(torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1))

    handle = model.stages[stage].register_forward_hook(capture)
    try:
        batch_logits(model, features, batch_size=batch_size)
    finally:
        handle.remove()
    return torch.cat(freq).numpy(), torch.cat(chan).numpy()


def device_separability(stats, devices, seed=0):
    """Cross-validated (5-fold) balanced accuracy of a 5-nearest-neighbour device classifier on
    standardised statistics (chance = 1 / number of devices)."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = max(2, min(5, min(np.unique(devices, return_counts=True)[1])))  # tiny sets: fewer folds
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(min(5, len(devices) - len(devices) // folds - 1)))
    return float(cross_val_score(knn, stats, devices, cv=folds, scoring="balanced_accuracy").mean())


def balanced_subset(clips, per_device, seed=0):
    """Indices of up to `per_device` clips of each device (device A dominates the training split)."""
    rng = np.random.default_rng(seed)
    devices = np.array([c.device for c in clips])
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(devices == d))[:per_device]
                                   for d in sorted(set(devices))]))


def tsne_figure(checkpoint, data_root, out, split="train", per_device=150, cache_dir=None, seed=0, progress=True):
    """Write the side-by-side t-SNE figure to `out`; return the device k-NN accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    if per_device < 2:
        raise TinyascError(f"--per-device must be at least 2 (clips per device for the k-NN score), not {per_device}")
    model, feature_cfg, _, payload = load_checkpoint(checkpoint)
    if not hasattr(model, "stages"):
        raise TinyascError(f"{checkpoint}: Figure 1 needs a BC-ResNet-ASC model (stage outputs); this is {payload['arch']}")
    clips = read_split(data_root, split)
    counts = {d: sum(c.device == d for c in clips) for d in sorted({c.device for c in clips})}
    too_few = {d: n for d, n in counts.items() if n < 2}
    if len(counts) < 2 or too_few:
        raise TinyascError(f"{data_root}: the {split} split needs at least 2 devices with 2 clips each for Figure 1; "
                           f"clips per device: {counts}")
    cache = FeatureCache.build_or_load(data_root, clips, feature_cfg, cache_dir=cache_dir,
                                       num_samples=payload.get("clip_samples"), progress=progress)
    index = balanced_subset(clips, per_device, seed)
    devices = np.array([clips[i].device for i in index])
    freq, chan = stage_statistics(model, cache.features[index])
    panels = [("frequency-wise mean and std", freq), ("channel-wise mean and std", chan)]
    scores = {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, (title, stats) in zip(axes, panels):
        scores[title] = device_separability(stats, devices, seed)
        standardised = (stats - stats.mean(0)) / (stats.std(0) + 1e-8)
        xy = TSNE(2, perplexity=min(30.0, (len(stats) - 1) / 3), init="pca", random_state=seed).fit_transform(standardised)
        for d in sorted(set(devices)):
            ax.scatter(*xy[devices == d].T, s=6, label=d.upper())
        ax.set_title(f"{title}\n5-NN device balanced accuracy {100 * scores[title]:.0f}% "
                     f"(chance {100 / len(set(devices)):.0f}%)")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(markerscale=3, fontsize=8, title="device")
    fig.suptitle(f"t-SNE of stage-2 feature maps, {split} split — {checkpoint}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return scores
