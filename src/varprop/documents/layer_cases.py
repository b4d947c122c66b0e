r"""What the layer documents (``derivations/layers/<kind>.md``) check: for every layer type of
:mod:`varprop.layers` beyond ``Dense`` and ``Nonlinearity``, a short account (what it computes,
its assumptions, where its rule is exact, its source) and a few configurations, each a small
:class:`~varprop.Network` and a claim about one layer position.

A configuration's claim is the sentence "the second moment of <quantity> at <position> is
<prediction>", the prediction computed by :func:`varprop.predict_variance` (``per_layer=True``)
when the document is generated; where a hand derivation gives a closed form independent of the
engine (``closed_form``), the document prints it next to the prediction.  The verdict is
:func:`varprop.verify` on that network and position, at a fixed seed.

The layer classes are looked up by name in :mod:`varprop.network.layers`; a layer type that the
installed version does not have is left out (no document), so that the documents grow with the
layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from varprop.components.schemes import InitScheme, init_scheme
from varprop.network.model import Network

__all__ = ["Case", "LayerTopic", "LAYER_TOPICS", "available_topics"]

#: Width of the layer documents' networks (small: the Monte Carlo budget of every new document
#: together is about a minute).
WIDTH = 32


@dataclass(frozen=True)
class Case:
    """One verdict row: ``build(L)`` makes the network from the layer module ``L``; the claim is
    about ``quantity`` (``"output"`` or ``"output_gradient"``) at layer position ``layer``
    (``None``: the last position for ``"output"``, the first for ``"output_gradient"``)."""

    key: str
    label: str
    build: Callable[[ModuleType], Network]
    quantity: str = "output"
    layer: int | None = None
    closed_form: Callable[[], float] | None = None
    closed_text: str = ""
    #: ``(padding, kernel, length)`` of a stride-1 1-D convolution (the network's last layer)
    #: whose output the document also lists position by position.
    positions: tuple[str, int, int] | None = None

    def position(self, net: Network) -> int:
        if self.layer is not None:
            return self.layer if self.layer > 0 else net.depth + 1 + self.layer
        return 1 if self.quantity == "output_gradient" else net.depth


@dataclass(frozen=True)
class LayerTopic:
    """One layer document: the classes it covers (names in :mod:`varprop.layers`; the first names
    the document), its prose and its configurations."""

    classes: tuple[str, ...]
    title: str
    computes: str
    assumptions: str
    source: str
    cases: tuple[Case, ...]


def _dense(L: ModuleType, init: str = "lecun_normal", width: int = WIDTH) -> object:
    return L.Dense(width, init=init)


def _residual_net(scale: float, blocks: int = 3) -> Callable[[ModuleType], Network]:
    def build(L: ModuleType) -> Network:
        block = L.Residual([L.Nonlinearity("relu"), L.Dense(WIDTH, init="he_normal")], scale=scale)
        return Network([_dense(L)] + [block] * blocks, input_shape=(WIDTH,))
    return build


def _residual_cases() -> tuple[Case, ...]:
    out = []
    for s, text in ((1.0, "1"), (0.5, "0.5"), (0.0, "0")):
        out.append(Case(f"scale{text}", f"3 blocks $x + {text}\\,W\\,\\mathrm{{relu}}(x)$, He",
                        _residual_net(s), closed_form=lambda s=s: (1.0 + s * s) ** 3,
                        closed_text=f"$(1 + {text}^2)^3$"))
    out.append(Case("scale0.5-grad", "3 blocks, scale 0.5: gradient at the first block's input",
                    _residual_net(0.5), quantity="output_gradient", layer=1,
                    closed_form=lambda: (1.0 + 0.25) ** 3, closed_text="$(1 + 0.5^2)^3$"))
    return tuple(out)


def _norm_net(cls: str, eps: float, q: float) -> Callable[[ModuleType], Network]:
    def build(L: ModuleType) -> Network:
        return Network([_dense(L), getattr(L, cls)(eps=eps)], input_shape=(WIDTH,),
                       input_variance=q)
    return build


def _norm_cases(cls: str, small: float) -> tuple[Case, ...]:
    rows = []
    for eps, q in ((small, 1.0), (1.0, 1.0), (1.0, 0.25)):
        rows.append(Case(f"eps{eps:g}-q{q:g}", f"eps = {eps:g}, input $E x^2$ = {q:g}",
                         _norm_net(cls, eps, q),
                         closed_form=(lambda eps=eps, q=q: q / (q + eps)),
                         closed_text="$q/(q+\\epsilon)$"))
    rows.append(Case("eps1-q1-grad", "eps = 1, input $E x^2$ = 1: gradient at the norm's input",
                     _norm_net(cls, 1.0, 1.0), quantity="output_gradient", layer=1))
    return tuple(rows)


def _dropout_net(p: float, mode: str = "train") -> Callable[[ModuleType], Network]:
    def build(L: ModuleType) -> Network:
        return Network([_dense(L), L.Dropout(p, mode=mode)], input_shape=(WIDTH,))
    return build


def _dropout_cases() -> tuple[Case, ...]:
    rows = [Case(f"p{p:g}", f"p = {p:g}, train", _dropout_net(p),
                 closed_form=lambda p=p: 1.0 / (1.0 - p), closed_text="$1/(1-p)$")
            for p in (0.1, 0.5)]
    rows.append(Case("p0.5-grad", "p = 0.5, train: gradient at the dropout's input",
                     _dropout_net(0.5), quantity="output_gradient", layer=1,
                     closed_form=lambda: 2.0, closed_text="$1/(1-p)$"))
    rows.append(Case("p0.5-eval", "p = 0.5, eval", _dropout_net(0.5, "eval"),
                     closed_form=lambda: 1.0, closed_text="$1$"))
    return tuple(rows)


def _conv_net(padding: object, kernel: int = 3, length: int = 8) -> Callable[[ModuleType], Network]:
    # an identity first, so that layer position 1 is the convolution's input
    def build(L: ModuleType) -> Network:
        return Network([L.Nonlinearity("linear"), L.Conv(8, kernel, padding=padding,
                                                          init="lecun_normal")],
                       input_shape=(4, length))
    return build


def _conv_same_closed() -> float:
    # zero padding, kernel 3, length 8: the two edge positions see 2 of the 3 taps
    return (6 * 1.0 + 2 * (2.0 / 3.0)) / 8


def _conv_cases() -> tuple[Case, ...]:
    return (
        Case("same", "1-D, 4 -> 8 channels, kernel 3, length 8, padding same (zeros)",
             _conv_net("same"), closed_form=_conv_same_closed,
             closed_text="$(6 + 2\\cdot\\tfrac23)/8$ (edge positions see 2 of 3 taps)",
             positions=("same", 3, 8)),
        Case("valid", "1-D, kernel 3, padding valid", _conv_net("valid"),
             closed_form=lambda: 1.0, closed_text="$1$", positions=("valid", 3, 8)),
        Case("circular", "1-D, kernel 3, padding circular", _conv_net("circular"),
             closed_form=lambda: 1.0, closed_text="$1$", positions=("circular", 3, 8)),
        Case("same-grad", "1-D, kernel 3, padding same: gradient at the input",
             _conv_net("same"), quantity="output_gradient", layer=1),
        Case("2d-same", "2-D, 4 -> 8 channels, kernel 3, 6x6, padding same",
             lambda L: Network([L.Nonlinearity("linear"), L.Conv(8, 3, padding="same")],
                              input_shape=(4, 6, 6)),
             closed_form=lambda: (16 * 1.0 + 16 * (2 / 3) + 4 * (4 / 9)) / 36,
             closed_text="$(16 + 16\\cdot\\tfrac23 + 4\\cdot\\tfrac49)/36$"),
    )


def _pool_net(pool: Callable[[ModuleType], object]) -> Callable[[ModuleType], Network]:
    def build(L: ModuleType) -> Network:
        return Network([L.Conv(8, 3, padding="circular", init="he_normal"), L.Nonlinearity("relu"),
                        pool(L)], input_shape=(4, 8))
    return build


def _pool_cases(cls: str, make: Callable[[ModuleType], object]) -> tuple[Case, ...]:
    return (Case("after-relu", f"`{cls}` after a circular 1-D conv (He) and ReLU, length 8",
                 _pool_net(make)),
            Case("after-relu-grad", f"`{cls}` after conv and ReLU: gradient at the pool's input",
                 _pool_net(make), quantity="output_gradient", layer=2))


def _bn_net(batch: int, blocks: int = 4) -> Callable[[ModuleType], Network]:
    def build(L: ModuleType) -> Network:
        block = [L.Dense(WIDTH, init="he_normal"), L.BatchNorm(mode="train", batch_size=batch),
                 L.Nonlinearity("relu")]
        return Network(block * blocks, input_shape=(WIDTH,))
    return build


def _bn_cases() -> tuple[Case, ...]:
    rows = []
    for b in (4, 8, 16):
        rows.append(Case(f"B{b}-grad", f"4 blocks Dense-BN-ReLU, train, B = {b}: gradient at the "
                         "input", _bn_net(b), quantity="output_gradient", layer=1))
    rows.append(Case("B8-out", "4 blocks, train, B = 8: the last BatchNorm's output",
                     _bn_net(8), layer=-2))
    rows.append(Case("eval", "eval mode (running variance 1): $x/\\sqrt{1+\\epsilon}$",
                     lambda L: Network([_dense(L), L.BatchNorm(mode="eval")], input_shape=(WIDTH,)),
                     closed_form=lambda: 1.0 / (1.0 + 1e-5), closed_text="$1/(1+\\epsilon)$"))
    return tuple(rows)


def _rnn_net(scale: float, steps: int = 10) -> Callable[[ModuleType], Network]:
    def build(L: ModuleType) -> Network:
        init = _scaled(scale)
        return Network([L.Nonlinearity("linear"), L.Recurrent(WIDTH, "tanh", steps=steps, init=init)],
                       input_shape=(steps, WIDTH))
    return build


def _scaled(scale: float) -> InitScheme:
    """``variance_scaling`` with variance ``scale**2 / fan_in`` (Gaussian): weight scale
    :math:`\\sigma_w\\sqrt n` = ``scale``."""
    return init_scheme("variance_scaling", scale=scale * scale, mode="fan_in",
                       distribution="normal")


def _rnn_cases() -> tuple[Case, ...]:
    rows = []
    for g in (0.5, 1.0, 2.0):
        rows.append(Case(f"g{g:g}", f"tanh, width {WIDTH}, 10 steps, $\\sigma_w\\sqrt n$ = {g:g}: "
                         "the hidden state averaged over the 10 steps", _rnn_net(g)))
    rows.append(Case("g2-grad", "tanh, 10 steps, $\\sigma_w\\sqrt n$ = 2: gradient at the input "
                     "sequence", _rnn_net(2.0), quantity="output_gradient", layer=1))
    return tuple(rows)


LAYER_TOPICS: tuple[LayerTopic, ...] = (
    LayerTopic(
        ("Residual",), "Residual blocks",
        "`Residual(branch, scale=s)` computes $y = x + s\\,f(x)$, $f$ the composition of the "
        "`branch` layers (a `shortcut` list, if given, replaces the identity on the skip path).  "
        "Scale 1 is the plain block (He et al. 2016), $1/\\sqrt{L}$ the depth-scaled one, 0 "
        "SkipInit / ReZero at initialisation (De & Smith 2020; Bachlechner et al. 2020), a "
        "small scale a Fixup-style rescaled branch (Zhang et al. 2019).",
        "The branch ends in a zero-mean weight layer independent of $x$, so $E[x f(x)] = 0$ and "
        "$E y^2 = E x^2 + s^2 E f(x)^2$; backward $E\\delta_x^2 = E\\delta_y^2 + s^2 "
        "E\\delta_{f}^2$ under gradient independence.  With a ReLU branch and He init each "
        "block multiplies the second moment by $1 + s^2$ at infinite width; at every width "
        "only when the branch's activation acts on a weight layer's output (a ReLU applied to "
        "the stream $x$ itself, which is not symmetric after a residual sum, is exact only "
        "in the first block: the table says which claims hold at every width).",
        "He, Zhang, Ren & Sun 2016; De & Smith 2020; Bachlechner et al. 2020; Zhang, Dauphin & "
        "Ma 2019 (Fixup).",
        _residual_cases()),
    LayerTopic(
        ("LayerNorm",), "Layer normalisation",
        "`LayerNorm(eps)` normalises each sample over its units: $y_i = (x_i - \\bar x)/"
        "\\sqrt{s^2 + \\epsilon}$ with $\\bar x$, $s^2$ the mean and (biased) variance of the "
        "sample's units; affine weight 1 and bias 0 at initialisation.",
        "At infinite width $\\bar x \\to E x$ and $s^2 \\to \\mathrm{Var}\\,x = q$ for every "
        "sample, so $E y^2 = q/(q+\\epsilon)$: the eps effect is visible when $q$ is not large "
        "against $\\epsilon$.  At finite width $n$ the sample variance fluctuates; with "
        "$\\epsilon = 0$ the unit average of $y^2$ is exactly 1.",
        "Ba, Kiros & Hinton 2016.",
        _norm_cases("LayerNorm", 1e-5)),
    LayerTopic(
        ("RMSNorm",), "RMS normalisation",
        "`RMSNorm(eps)` divides each sample by the root mean square of its units: $y_i = x_i/"
        "\\sqrt{\\overline{x^2} + \\epsilon}$, weight 1 at initialisation.",
        "At infinite width $\\overline{x^2} \\to E x^2 = q$, so $E y^2 = q/(q+\\epsilon)$ "
        "(no centring: the mean is kept).",
        "Zhang & Sennrich 2019.",
        _norm_cases("RMSNorm", 1e-6)),
    LayerTopic(
        ("Dropout",), "Dropout",
        "`Dropout(p)` in train mode keeps each unit with probability $1-p$ and scales the kept "
        "ones by $1/(1-p)$ (inverted dropout): $y = m x/(1-p)$, $m \\sim$ Bernoulli$(1-p)$ i.i.d.; "
        "eval mode is the identity.",
        "The mask is independent of $x$: $E y = E x$, $E y^2 = E x^2/(1-p)$, and backward "
        "$E\\delta_x^2 = E\\delta_y^2/(1-p)$ (the same mask), at every width.  The output is "
        "not Gaussian, which matters to a nonlinearity placed after it.",
        "Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014.",
        _dropout_cases()),
    LayerTopic(
        ("Conv",), "Convolutions",
        "`Conv(channels, kernel_size, stride, padding, init)` on $(C, L)$ or $(C, H, W)$ inputs: "
        "$z_{c,t} = \\sum_{c'}\\sum_{k} W_{c,c',k}\\, x_{c', t+k} + b_c$ with i.i.d. weights "
        "at the scheme's variance for PyTorch's fans ($n_{in} = C_{in}\\prod$ kernel).",
        "Zero-mean weights: $E z_t^2 = \\sigma_w^2 \\sum_{c'} \\sum_{k\\,\\mathrm{in\\ bounds}} "
        "E x_{c',t+k}^2 + \\sigma_b^2$, exact at every width; with zero padding the edge "
        "positions see fewer taps, so the second moment depends on the position.  Circular and "
        "valid padding keep every tap.",
        "PyTorch's `Conv1d`/`Conv2d` fan convention; Xiao et al. 2018 (mean field of CNNs); "
        "Novak et al. 2019 (Neural Tangents' spatial covariances).",
        _conv_cases()),
    LayerTopic(
        ("AvgPool",), "Average pooling",
        "`AvgPool(k, stride)` averages windows of $k$ positions of each channel.",
        "$E y^2 = k^{-2}\\sum_{t,t'\\in\\mathrm{window}} E x_t x_{t'}$: the covariance between "
        "positions is needed (non-zero after ReLU, whose mean is not zero), so the engine "
        "tracks it.",
        "Novak et al. 2019 (spatial covariances of pooling).",
        _pool_cases("AvgPool", lambda L: L.AvgPool(2))),
    LayerTopic(
        ("MaxPool",), "Max pooling",
        "`MaxPool(k, stride)` takes the maximum of windows of $k$ positions of each channel.",
        "The second moment of the maximum of the window's jointly Gaussian entries, by "
        "randomised quasi-Monte Carlo with its standard error declared (Clark's exact formula "
        "for two entries checks it); backward the gradient goes to the arg max.",
        "Novak et al. 2019; the moments of the maximum of correlated Gaussians (Clark 1961).",
        _pool_cases("MaxPool", lambda L: L.MaxPool(2))),
    LayerTopic(
        ("GlobalAvgPool",), "Global average pooling",
        "`GlobalAvgPool()` averages every position of each channel: $(C, \\dots) \\to (C,)$.",
        "$E y^2 = P^{-2}\\sum_{t,t'} E x_t x_{t'}$ over all $P$ positions: after ReLU the mean "
        "term $(E x)^2$ survives the averaging while the fluctuations shrink.",
        "Novak et al. 2019.",
        _pool_cases("GlobalAvgPool", lambda L: L.GlobalAvgPool())),
    LayerTopic(
        ("BatchNorm",), "Batch normalisation",
        "`BatchNorm(eps, mode=\"train\", batch_size=B)` normalises each unit over the $B$ samples "
        "of a batch: $y_b = (x_b - \\mu_B)/\\sqrt{\\sigma_B^2 + \\epsilon}$; `mode=\"eval\"` uses "
        "the running statistics, at initialisation mean 0 and variance 1: "
        "$y = x/\\sqrt{1+\\epsilon}$.",
        "Train mode couples the samples of a batch: its forward and backward maps depend on "
        "$B$ through the between-sample moments.  Backward, the gradient grows with depth in a "
        "batch-normalised ReLU network, at a rate that depends on the batch size (Yang et al. 2019).",
        "Ioffe & Szegedy 2015; Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019.",
        _bn_cases()),
    LayerTopic(
        ("Recurrent",), "Recurrent layers",
        "`Recurrent(n, phi, steps=T)` runs $h_t = \\phi(W h_{t-1} + U x_t + b)$, $h_0 = 0$, "
        "over an input sequence $(T, n_{in})$; one $W$ is shared by every step.",
        "The mean field treats the pre-activations as Gaussian at every step, with the "
        "covariance over time of one unit that the shared $W$ and $b$ induce (infinite width; "
        "Chen, Pennington & Schoenholz 2018); at finite width the tied weights add corrections, "
        f"which the Monte Carlo below measures at width {WIDTH}.  Back-propagation through "
        "time multiplies the gradient's second moment by $\\sigma_W^2 n\\,E\\phi'^2$ per "
        "step: vanishing "
        "below 1, exploding above.",
        "Chen, Pennington & Schoenholz 2018.",
        _rnn_cases()),
)


def available_topics(module: ModuleType) -> list[tuple[LayerTopic, type]]:
    """The topics whose first class ``module`` (:mod:`varprop.network.layers`) has, with it."""
    out = []
    for topic in LAYER_TOPICS:
        cls = getattr(module, topic.classes[0], None)
        if isinstance(cls, type):
            out.append((topic, cls))
    return out

