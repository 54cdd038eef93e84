"""Early-learning regularization (ELR; Liu, Niles-Weed, Razavian and Fernandez-Granda 2020): one
network that resists memorising wrong labels, at almost no extra cost.

A network fits the clean labels first and memorises the wrong ones later. ELR keeps, per training
row, a running average of the network's own predictions (`elr_beta`: the share of the old average kept
each time the row is seen) and adds `elr_lambda` x log(1 - <prediction, running average>) to the loss:
the loss falls as the prediction agrees with what the network predicted earlier, so a row whose label
contradicts its early predictions keeps being pulled back towards them instead of towards its label.
The averages live with the fit, not in its checkpoint: a resumed fit starts them again.
"""
from __future__ import annotations

import numpy as np
import torch


class EarlyLearningTargets:
    """The running average of each row's predictions (rows x classes), and the penalty against it."""

    def __init__(self, n_rows: int, n_classes: int, beta: float, device: torch.device):
        self.targets = torch.zeros(n_rows, n_classes, device=device)
        self.beta = beta

    def update(self, logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """Fold the batch's predictions into its rows' averages; their averages after the update."""
        index = torch.from_numpy(rows).to(self.targets.device)
        with torch.no_grad():
            probs = torch.softmax(logits.float(), 1).clamp(1e-4, 1 - 1e-4)
            probs = probs / probs.sum(1, keepdim=True)
            self.targets[index] = self.beta * self.targets[index] + (1 - self.beta) * probs
        return self.targets[index]


def elr_penalty(logits: torch.Tensor, averages: torch.Tensor) -> torch.Tensor:
    """The mean over the batch of log(1 - <softmax(logits), average>): lowest where they agree."""
    probs = torch.softmax(logits.float(), 1).clamp(1e-4, 1 - 1e-4)
    agreement = (probs * averages).sum(1)
    return torch.log((1 - agreement).clamp_min(1e-4)).mean()
