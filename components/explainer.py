""""How GrAInS works": the four steps for teaching, each tied to the tab that shows it."""

from __future__ import annotations

import gradio as gr

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]

STEPS_HTML = """
<div class="grains-steps">
  <div class="grains-step"><div class="grains-step-n">1</div><b>Attribute</b><span>Integrated Gradients of
  f = log P(y+|x) − log P(y−|x) over the input tokens</span></div>
  <div class="grains-step-arrow">→</div>
  <div class="grains-step"><div class="grains-step-n">2</div><b>Top-k</b><span>the k most positive (I+) and
  k most negative (I−) tokens</span></div>
  <div class="grains-step-arrow">→</div>
  <div class="grains-step"><div class="grains-step-n">3</div><b>Ablate → vectors</b><span>hidden-state shifts
  when I+ / I− are removed; v = mean(d+) − mean(d−) over examples (PCA optional)</span></div>
  <div class="grains-step-arrow">→</div>
  <div class="grains-step"><div class="grains-step-n">4</div><b>Steer</b><span>h + λv at one layer, then
  rescale each token back to its norm</span></div>
</div>
"""

TEXT = r"""
GrAInS (*Gradient-based Attribution for Inference-time Steering*, arXiv 2507.18043) steers a model toward
preferred answers without training. It needs preference examples: a prompt $x$, a preferred answer $y^+$ and a
dispreferred one $y^-$.

### 1. Attribute — *Attribute tab*
The contrastive objective is how much more the model believes the preferred answer:

$$f(x) = \log P(y^+ \mid x) - \log P(y^- \mid x).$$

Integrated Gradients spreads the change of $f$ between a baseline $x'$ (token embeddings set to zero, BOS and
template tokens kept) and the real input over the tokens:

$$\phi_i = \sum_d (x_{id} - x'_{id}) \int_0^1
\frac{\partial f\big(x' + \alpha (x - x')\big)}{\partial x_{id}}\, d\alpha .$$

The scores add up to $f(x) - f(x')$ (*completeness*); the gap is the **convergence delta** the app reports. Red
tokens push toward $y^+$, blue toward $y^-$. Both sequences $s^+ = x + y^+$ and $s^- = x + y^-$ are attributed;
a prompt token's heatmap score is its score in $s^+$ plus its score in $s^-$. For a vision-language model, image
patches are tokens too, and their scores laid on the patch grid are the overlay on the photo.

### 2. Top-k — *Attribute tab, top-k controls*
In each sequence, $I^+$ = the $k$ tokens with the largest scores and $I^-$ = the $k$ most negative. Format tokens
(`Q:`, `A:`, `<bos>`) often win raw top-k, so by default only content tokens can be picked. Click a token to force
it in or out.

### 3. Ablation deltas → vectors — *Steer tab, Build*
Replace the selected tokens' embeddings by the baseline and read the hidden state of the last token at every
layer $l$:

$$\delta^+ = h_l(s) - h_l(s \setminus I^+), \qquad \delta^- = h_l(s) - h_l(s \setminus I^-).$$

Over $N$ examples the steering vector is $v = v^+ - v^-$. By default $v^+$ and $v^-$ are the means of all
$\delta^+$ and all $\delta^-$; the paper's variant (*PCA* in the Steer tab) takes the first principal component of
each, with its sign aligned to the mean. (Both PCs mostly capture the generic "something was removed" shift, so
their difference nearly cancels on small models; the means do not; the vector card shows each layer's raw
$\lVert v \rVert$ and the cosine of $v^+$ and $v^-$, and warns when they nearly cancelled.) Layer and strength are
chosen by cross-validation on held-out examples, with strength 0 (no steering) as a candidate and only among cells
whose side effect stays within a KL budget. The maximum over the cells is labelled "best of N" (it is biased upward);
the estimate is nested cross-validation (the whole choice re-made without the items that score it), and a win is
claimed only when a paired test rejects "no gain". Otherwise the suggested strength is 0: the model does not move.

### 4. Steer with a norm rescale — *Compare and Evaluate tabs*
At inference, at the chosen layer and every token position:

$$h' = h + \lambda\, m_l \frac{v}{\lVert v \rVert}, \qquad h'' = h' \cdot \frac{\lVert h \rVert}{\lVert h' \rVert}.$$

$m_l$ is the layer's median hidden-state norm, so $\lambda = 0.5$ means "half a typical hidden state" on any
model and layer; $\lambda$ runs from −4 to 4, and a negative $\lambda$ steers toward the rejected answers.
The rescale (per token, over the hidden dimension) keeps every representation at its original
length: steering turns the direction, it does not inflate the activations.

**Reading results.** A vector is only as good as its held-out effect: the Evaluate tab compares accuracy with and
without steering on the same items (exact McNemar test, bootstrap interval) and reports which answers the model
gives, because a vector that just shifts an A/B or yes/no bias can look significant while learning nothing. Every
steered result comes with its side effects: the mean KL divergence of next-token distributions on neutral prompts and
the repetition of steered continuations. Prompts reach the model in the format you choose beside them (raw as
written, qa, or the chat template); the "Model input" box shows the exact text.
"""


def build_explainer() -> None:
    """The How GrAInS works tab."""
    gr.HTML(STEPS_HTML, elem_id="grains-steps")
    gr.Markdown(TEXT, latex_delimiters=LATEX, elem_id="grains-explainer")
