"""DCASE Task 1 (TAU Urban Acoustic Scenes Mobile) constants, in one place: the ten scene classes in
DCASE order, the recording devices and their groups (paper Table 3: real A, B, C; simulated devices
seen in training S1–S3; unseen S4–S6), device ids as device-specific models key them, and the
softmax that turns a model's logits into the probabilities a submission holds. numpy only."""
import numpy as np

# label index i is SCENES[i]; the submission files' column order
SCENES = ("airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram")
DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
# "seen" simulated devices appear in training, "unseen" ones only in the evaluation split.
# A group's accuracy is pooled over the clips of its devices (tinyasc.evaluate.metrics); on the
# evaluate split every device has the same number of clips, so it equals the mean of the devices'.
DEVICE_GROUPS = {"real": ("a", "b", "c"), "seen": ("s1", "s2", "s3"), "unseen": ("s4", "s5", "s6")}


def device_key(device_id):
    """A recording device id as device models are keyed ('A ' → 'a'); None stays None."""
    return None if device_id is None else str(device_id).strip().lower()


def device_groups(device_ids):
    """[(device id, indices)] of the inputs per device, devices in order of first appearance."""
    groups = {}
    for i, device in enumerate(device_ids):
        groups.setdefault(device_key(device), []).append(i)
    return list(groups.items())


def softmax(logits):
    """Row-wise probabilities of (N, K) logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
