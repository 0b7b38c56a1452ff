"""Render the identity registry: result tables (text, Markdown, LaTeX) and the catalogue page.

``docs/identities.md`` is :func:`catalogue_markdown` written to disk; a test compares the two, so
the page cannot drift from the registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import sympy as sp

from scalewise import checks
from scalewise.theory.identity import IDENTITIES, SLIPS, CheckResult, Identity

FORMATS = ("table", "markdown", "latex")

REFERENCES = {
    "Bussgang 1952": "Julian J. Bussgang, \"Crosscorrelation functions of amplitude-distorted "
    "Gaussian signals\", MIT Research Laboratory of Electronics, Technical Report 216, 1952",
    "Chen et al. 2023": "Xiangning Chen, Chen Liang, Da Huang, Esteban Real, Kaiyuan Wang, Yao "
    "Liu, Hieu Pham, Xuanyi Dong, Thang Luong, Cho-Jui Hsieh, Yifeng Lu, Quoc V. Le, "
    "\"Symbolic Discovery of Optimization Algorithms\", NeurIPS 2023",
    "Defazio 2025": "Aaron Defazio, \"Why Gradients Rapidly Increase Near the End of "
    "Training\", arXiv:2506.02285, 2025",
    "Hu et al. 2024": "Shengding Hu et al., \"MiniCPM: Unveiling the Potential of Small "
    "Language Models with Scalable Training Strategies\", arXiv:2404.06395, 2024",
    "Jordan et al. 2024": "Keller Jordan, Yuchen Jin, Vlado Boza, Jiacheng You, Franz Cesista, "
    "Laker Newhouse, Jeremy Bernstein, \"Muon: An optimizer for hidden layers in neural "
    "networks\", 2024 (technical blog post; torch.optim.Muon implements it)",
    "Loshchilov and Hutter 2017": "Ilya Loshchilov, Frank Hutter, \"SGDR: Stochastic Gradient "
    "Descent with Warm Restarts\", ICLR 2017",
    "Sutskever et al. 2013": "Ilya Sutskever, James Martens, George Dahl, Geoffrey Hinton, "
    "\"On the importance of initialization and momentum in deep learning\", ICML 2013 "
    "(Nesterov's momentum in the form torch.optim.SGD(nesterov=True) uses)",
    "Wang and Aitchison 2024": "Xi Wang, Laurence Aitchison, \"How to set AdamW's weight "
    "decay as you scale model and dataset size\", arXiv:2405.13698, 2024 (ICML 2025)",
}
"""Sources beyond the seeds, by the key an identity's ``source`` starts with."""

SEEDS = {
    "000": "lecture slides, 2022 (000_f2bdbb76a8cc4a30.txt)",
    "001": "lecture notes, Ch. 5 (001_ec38f84fe8478afc.txt)",
    "002": "lecture slides, 2021 (002_cd849d122e313ad8.txt)",
    "003": "second-order optimization slides (003_06a84c88748080a6.txt)",
    "004": "Three Mechanisms of Weight Decay Regularization (004_da010b54934a848f.txt)",
}
"""The seed documents by the file prefix that sources cite ("001 Eq. (23)")."""


def _verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def _rows(results: Sequence[CheckResult]) -> list[tuple[str, str, str, str, str]]:
    return [
        (r.name, r.source, _verdict(r.holds), _verdict(r.control_rejected), f"{r.seconds:.3f}")
        for r in results
    ]


_HEADER = ("name", "source", "holds", "control rejected", "seconds")


def _text_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [_HEADER, *rows]) for i in range(len(_HEADER))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

    return "\n".join([line(_HEADER), line(tuple("-" * w for w in widths)), *map(line, rows)])


def _markdown_table(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    return text.replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("#", r"\#")


def _latex_table(rows: list[tuple[str, ...]]) -> str:
    body = [" & ".join(_latex_escape(cell) for cell in row) + r" \\" for row in rows]
    return "\n".join(
        [
            r"\begin{tabular}{llccr}",
            r"\hline",
            " & ".join(_HEADER) + r" \\",
            r"\hline",
            *body,
            r"\hline",
            r"\end{tabular}",
        ]
    )


def results_table(results: Sequence[CheckResult], fmt: str = "table") -> str:
    """The results of :func:`theory.check_all` as a text, Markdown or LaTeX table."""
    renderers = {"table": _text_table, "markdown": _markdown_table, "latex": _latex_table}
    checks.one_of("fmt", fmt, FORMATS)
    return renderers[fmt](_rows(results))


def witness_lines(results: Sequence[CheckResult]) -> str:
    """One line per result: the exact point (and size) at which its control differs from the
    claim, or that none was found."""
    return "\n".join(f"{r.name}: {r.witness or 'no witness found'}" for r in results)


def seeds_cited(source: str) -> list[str]:
    """The seeds a source reference cites, by prefix, in order.

    >>> seeds_cited("001 Sec. 5 (AdamW), Eq. (22); 004 Mechanism I")
    ['001', '004']
    """
    found = re.findall(r"(?<![\d.])(\d{3})(?![\d.])", source)
    return [key for key in dict.fromkeys(found) if key in SEEDS]


def inline_math(latex: str) -> str:
    r"""``latex`` as inline maths that survives a Markdown table cell: ``$...$`` on one line,
    with its bars written ``\vert`` and ``\Vert`` (a bare ``|`` would end the cell).

    >>> print(inline_math(r"\|w\|^2 = |x|"))
    $\Vert w\Vert ^2 = \vert x\vert $
    """
    one_line = " ".join(latex.split())
    return "$" + one_line.replace(r"\|", r"\Vert ").replace("|", r"\vert ") + "$"


def summary_markdown(items: Iterable[Identity], results: Mapping[str, tuple[bool, bool, float]],
                     link: Callable[[Identity], str]) -> str:
    """A Markdown table of ``items``: name, statement (rendered maths), source (linked to
    ``link(item)``), whether it holds and its control is rejected, and the seconds of its check,
    from ``results`` (name -> (holds, control rejected, seconds)); unchecked ones show a dash."""
    lines = ["| identity | statement | source | holds | control rejected | seconds |",
             "|---|---|---|---|---|---|"]
    for item in items:
        found = results.get(item.name)
        verdicts = ([_verdict(found[0]), _verdict(found[1]), f"{found[2]:.2f}"] if found
                    else ["—", "—", "—"])
        source = item.source.replace("|", "/").replace("[", "(").replace("]", ")")
        lines.append(f"| `{item.name}` | {inline_math(item.statement)} | "
                     f"[{source}]({link(item)}) | " + " | ".join(verdicts) + " |")
    return "\n".join(lines)


def identity_markdown(item: Identity) -> str:
    """The identity's entry of ``docs/identities.md``: name, source, statement, sizes, domain
    and note."""
    return "\n".join(_identity_section(item))


def _identity_section(item: Identity) -> list[str]:
    lines = [f"### `{item.name}`", "", f"Source: {item.source}.", "", f"$${item.statement}$$", ""]
    if item.sizes:
        lines += [f"Checked for sizes {item.sizes_text}.", ""]
    if item.domain:
        conditions = ", ".join(f"${sp.latex(c)}$" for c in item.domain)
        lines += [f"Domain (besides the signs of the symbols): {conditions}.", ""]
    if item.note:
        lines += [item.note, ""]
    return lines


def _topics(items: Iterable[Identity]) -> dict[str, list[Identity]]:
    grouped: dict[str, list[Identity]] = {}
    for item in items:
        grouped.setdefault(item.topic, []).append(item)
    return grouped


def catalogue_markdown() -> str:
    """The Markdown page listing every identity, its source and statement, and every slip."""
    lines = [
        "# Identities proved by scalewise",
        "",
        "Generated from `theory.IDENTITIES` by `scalewise docs`; do not edit by hand.",
        "Each identity is checked exactly in SymPy (`scalewise proofs`), and each has a negative",
        "control, a deliberately wrong variant, rejected only with a witness: an exact point at",
        "which claim and control differ (`scalewise proofs --witnesses`).",
        "What proves, simulates or measures each equation, figure and claim of the seeds:",
        "[coverage.md](coverage.md).",
        "",
        "Seeds (in `shared/seeds/`):",
        "",
        *[f"- {key}: {title}" for key, title in SEEDS.items()],
        "",
        "References beyond the seeds (an identity citing one names it by the key before the "
        "colon):",
        "",
        *[f"- {key}: {title}" for key, title in REFERENCES.items()],
        "",
        f"{len(IDENTITIES)} identities in {len(_topics(IDENTITIES.values()))} topics; "
        f"{len(SLIPS)} slips found in the seeds.",
        "",
    ]
    for topic, items in _topics(IDENTITIES.values()).items():
        lines += [f"## {topic}", ""]
        for item in items:
            lines += _identity_section(item)
    lines += ["## Slips in the seeds", "", "| seed | place | says | what is true | proved by |"]
    lines += ["|---|---|---|---|---|"]
    for s in SLIPS:
        cells = [s.seed, s.place, s.says, s.truth, f"`{s.identity}`"]
        lines.append("| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
