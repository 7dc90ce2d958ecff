"""TeX from the sandbox that a frontend's MathJax/KaTeX typesets (HOST side, called by ``active_content``).

MathJax and KaTeX also know macros that make links, set CSS classes, styles
and ids, load extensions or define macros (``\\href``, ``\\class``,
``\\style``, ``\\cssId``, ``\\unicode``, ``\\require``, ``\\def``, ...):
a ``cursor:url(...)`` style fetches on hover, an ``\\href`` runs
``javascript:`` on click. :func:`latex_refusal` names the first macro of a
``text/latex`` output outside :data:`LATEX_MACROS` (that output is dropped);
:func:`defuse_tex` breaks every such macro in HTML and markdown, where
JupyterLab typesets ``$...$`` too, by a zero-width space after its
backslash (the formula shows an error, the text reads the same).
"""

from __future__ import annotations

import re

#: TeX macros a ``text/latex`` output may use: math symbols, layout and fonts, nothing that makes a
#: link, sets a CSS class/style/id, loads an extension, defines a macro or runs an action
LATEX_MACROS = frozenset(
    """
    alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa varkappa lambda mu nu xi
    omicron pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda
    Xi Pi Sigma Upsilon Phi Psi Omega digamma aleph beth gimel hbar hslash ell wp Re Im imath jmath
    sum prod coprod int iint iiint oint bigcup bigcap bigsqcup bigvee bigwedge bigoplus bigotimes bigodot
    biguplus lim limsup liminf sup inf max min arg det exp log ln lg sin cos tan cot sec csc arcsin arccos
    arctan sinh cosh tanh coth deg dim gcd hom ker Pr mod bmod pmod pod
    leq geq neq le ge ne leqslant geqslant approx equiv sim simeq cong propto ll gg prec succ preceq succeq
    subset supset subseteq supseteq subsetneq supsetneq sqsubseteq sqsupseteq in notin ni owns forall
    exists nexists mid nmid parallel nparallel perp models vdash dashv asymp doteq bowtie smile frown
    to gets mapsto rightarrow leftarrow Rightarrow Leftarrow leftrightarrow Leftrightarrow longrightarrow
    longleftarrow Longrightarrow Longleftarrow longleftrightarrow Longleftrightarrow longmapsto implies
    impliedby iff uparrow downarrow Uparrow Downarrow updownarrow Updownarrow nearrow searrow swarrow
    nwarrow hookrightarrow hookleftarrow rightharpoonup rightharpoondown leftharpoonup leftharpoondown
    rightleftharpoons xrightarrow xleftarrow
    infty partial nabla cdot cdots ldots dots dotsc dotsb dotsm vdots ddots times div pm mp ast star circ
    bullet oplus ominus otimes oslash odot cup cap sqcup sqcap uplus setminus smallsetminus wedge vee land
    lor neg lnot emptyset varnothing angle measuredangle prime backslash surd top bot triangle
    triangleleft triangleright bigtriangleup bigtriangledown diamond Box square blacksquare checkmark
    dagger ddagger amalg wr natural flat sharp clubsuit diamondsuit heartsuit spadesuit complement
    therefore because
    frac dfrac tfrac cfrac binom dbinom tbinom choose over atop sqrt root of left right middle big Big bigg
    Bigg bigl bigr Bigl Bigr biggl biggr Biggl Biggr bigm Bigm overline underline hat widehat tilde
    widetilde bar vec dot ddot dddot acute grave breve check mathring overbrace underbrace overset underset
    stackrel substack overrightarrow overleftarrow limits nolimits displaystyle textstyle scriptstyle
    scriptscriptstyle mathrm mathbf mathit mathsf mathtt mathcal mathbb mathfrak mathscr mathnormal
    boldsymbol bm pmb operatorname operatornamewithlimits text textrm textbf textit textsf texttt textup
    textnormal mbox emph rm bf it sf tt cal quad qquad enspace thinspace negthinspace hspace vspace kern
    mkern mskip hskip phantom hphantom vphantom smash mathstrut strut begin end hline cline hdashline
    langle rangle lfloor rfloor lceil rceil lbrace rbrace lbrack rbrack vert Vert lvert rvert lVert rVert
    ulcorner urcorner llcorner lrcorner lgroup rgroup tag notag nonumber mathop mathbin mathrel
    mathopen mathclose mathpunct mathord mathinner not neq cancel bcancel xcancel sideset tiny small
    normalsize large Large LARGE huge Huge displaylines space nobreakspace
    """.split()
)
_TEX_TOKEN = re.compile(r"\\([A-Za-z]+|.)", re.S)


def latex_refusal(text: str) -> str | None:
    """The first macro of ``text`` that is not in :data:`LATEX_MACROS`, or None (control symbols such
    as ``\\,`` or ``\\\\`` are typography and always allowed). TeX's own tokens: ``\\\\href`` is a
    line break and the letters "href"."""
    for m in _TEX_TOKEN.finditer(text):
        name = m.group(1)
        if name[:1].isalpha() and name not in LATEX_MACROS:
            return name
    return None


#: what starts typeset math in a frontend: ``$``, ``\\(``, ``\\[``, ``\\begin``, ``\\ref``-like environments
_MATH = re.compile(r"\$|\\[(\[]|\\begin\b")


def defuse_tex(text: str) -> str:
    """``text`` with every macro outside :data:`LATEX_MACROS` broken (``\\`` + U+200B + name), or ``text``."""
    if "\\" not in text or not _MATH.search(text):  # typeset only between math delimiters
        return text

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        return "\\\u200b" + name if name[:1].isalpha() and name not in LATEX_MACROS else m.group(0)

    out = _TEX_TOKEN.sub(one, text)
    return text if out == text else out


__all__ = ["LATEX_MACROS", "defuse_tex", "latex_refusal"]
