"""L2-regularised logistic regression on standardised features (scipy), and Platt scaling.

A fit standardises each feature with the training mean and standard deviation, then
minimises the negative log-likelihood plus ``penalty / 2 * |W|²`` (the intercepts are not
penalised) with L-BFGS: one logit row for two classes (sigmoid), K rows for K classes
(softmax). It is the fitter of the measured scorer (:mod:`lungai.training.measured`) and of the
comparison scorers the evaluation fits on the training split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy.special import expit, log_softmax, logit, softmax


@dataclass(frozen=True)
class LogisticFit:
    """A fitted regression.

    Attributes:
        mean: training mean of each feature.
        scale: training standard deviation of each feature (1 where it is 0).
        weight: ``(rows, features)`` coefficients on the standardised features.
        bias: ``(rows,)`` intercepts.
    """

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(N, rows)`` logits."""
        return ((np.asarray(x, float) - self.mean) / self.scale) @ self.weight.T + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probability of class 1 ``(N,)`` for two classes, else ``(N, K)`` class probabilities."""
        z = self.logits(x)
        return expit(z[:, 0]) if z.shape[1] == 1 else softmax(z, axis=1)


def fit_logistic(x: np.ndarray, y: np.ndarray, classes: int = 2, penalty: float = 1.0) -> LogisticFit:
    """Fit on features ``x`` ``(N, F)`` and integer labels ``y`` in ``0..classes-1``.

    Raises:
        ValueError: fewer cases than 2, or a class without cases.
    """
    x, y = np.asarray(x, float), np.asarray(y, int)
    if len(y) < 2 or np.bincount(y, minlength=classes).min() == 0:
        raise ValueError(f"every one of the {classes} classes needs training cases")
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    rows, features = (1 if classes == 2 else classes), x.shape[1]
    target = np.eye(classes)[y]

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        weight, bias = params[:rows * features].reshape(rows, features), params[rows * features:]
        logits = z @ weight.T + bias
        if rows == 1:
            nll = float(np.sum(np.logaddexp(0.0, logits[:, 0]) - y * logits[:, 0]))
            residual = (expit(logits[:, 0]) - y)[:, None]
        else:
            nll = float(-np.sum(target * log_softmax(logits, axis=1)))
            residual = softmax(logits, axis=1) - target
        grad_w = residual.T @ z + penalty * weight
        return nll + 0.5 * penalty * float(np.sum(weight ** 2)), np.concatenate([grad_w.ravel(), residual.sum(0)])

    result = optimize.minimize(loss, np.zeros(rows * (features + 1)), jac=True, method="L-BFGS-B")
    params = result.x
    return LogisticFit(mean, scale, params[:rows * features].reshape(rows, features), params[rows * features:])


def platt_scaling(probability: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` with ``sigmoid(a * logit(p) + b)`` calibrated on ``(probability, y)`` (maximum likelihood).

    Raises:
        ValueError: a single class.
    """
    score = logit(np.clip(np.asarray(probability, float), 1e-6, 1 - 1e-6))[:, None]
    fit = fit_logistic(score, y, 2, penalty=0.0)
    a = float(fit.weight[0, 0] / fit.scale[0])
    return a, float(fit.bias[0] - a * fit.mean[0])
