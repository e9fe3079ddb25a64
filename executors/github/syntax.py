"""The expression language's syntax: tokens and a recursive-descent parser to a tree. Pure.

Precedence, loosest first: `||`, `&&`, `==` `!=`, `<` `<=` `>` `>=`, `!`, then property
(`a.b`, `a.*`), index (`a[0]`, `a['b']`, `a[*]`) and calls (`contains(a, b)`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from executors.github.errors import ExpressionError

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))
  | (?P<string>'(?:[^']|'')*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\].,*])
    """,
    re.VERBOSE,
)
KEYWORDS = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class Token:
    """One lexical token."""

    kind: str  # number, string, ident, op, end
    text: str
    value: Any = None


def tokenize(source: str) -> list[Token]:
    """Split an expression into tokens; ExpressionError on a character that fits no token."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise ExpressionError(source, f"unexpected character {source[pos]!r} at {pos}")
        kind = match.lastgroup or ""
        text = match.group()
        pos = match.end()
        if kind == "space":
            continue
        if kind == "number":
            tokens.append(Token(kind, text, _number(text)))
        elif kind == "string":
            tokens.append(Token(kind, text, text[1:-1].replace("''", "'")))
        else:
            tokens.append(Token(kind, text))
    tokens.append(Token("end", ""))
    return tokens


def _number(text: str) -> float | int:
    lowered = text.lower()
    if "0x" in lowered:
        return int(lowered, 16)
    value = float(text)
    return int(value) if value.is_integer() and "e" not in lowered and "." not in text else value


# --- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """null, a boolean, a number or a string."""

    value: Any


@dataclass(frozen=True)
class Context:
    """A named context (`github`, `env`, `steps`, ...)."""

    name: str


@dataclass(frozen=True)
class Property:
    """`target.name`."""

    target: Node
    name: str


@dataclass(frozen=True)
class Index:
    """`target[index]`."""

    target: Node
    index: Node


@dataclass(frozen=True)
class Star:
    """`target.*` or `target[*]`."""

    target: Node


@dataclass(frozen=True)
class Call:
    """`name(args...)`."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """`!operand`."""

    operand: Node


@dataclass(frozen=True)
class Binary:
    """`left op right` for comparisons and the logical operators."""

    op: str
    left: Node
    right: Node


Node = Literal | Context | Property | Index | Star | Call | Not | Binary

_LEVELS: tuple[tuple[str, ...], ...] = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="))
MAX_DEPTH = 200


class Parser:
    """Parses one expression's tokens."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.pos = 0
        self.depth = 0

    def fail(self, reason: str) -> ExpressionError:
        """An error naming this expression."""
        return ExpressionError(self.source, reason)

    def peek(self) -> Token:
        """The next token."""
        return self.tokens[self.pos]

    def take(self) -> Token:
        """Consume the next token."""
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, text: str) -> Token:
        """Consume an operator token that must be `text`."""
        token = self.take()
        if token.kind != "op" or token.text != text:
            raise self.fail(f"expected {text!r}, found {token.text or 'the end'!r}")
        return token

    def parse(self) -> Node:
        """The whole expression."""
        if self.peek().kind == "end":
            raise self.fail("the expression is empty")
        node = self.binary(0)
        if self.peek().kind != "end":
            raise self.fail(f"unexpected {self.peek().text!r}")
        return node

    def binary(self, level: int) -> Node:
        """One precedence level of binary operators, left-associative."""
        if level == len(_LEVELS):
            return self.unary()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail("nested too deeply")
        node = self.binary(level + 1)
        while self.peek().kind == "op" and self.peek().text in _LEVELS[level]:
            op = self.take().text
            node = Binary(op, node, self.binary(level + 1))
        self.depth -= 1
        return node

    def unary(self) -> Node:
        """`!` operand, or a postfix chain."""
        if self.peek().kind == "op" and self.peek().text == "!":
            self.take()
            return Not(self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Node:
        """A literal, a parenthesised expression, a call or a context name."""
        token = self.take()
        if token.kind in ("number", "string"):
            return Literal(token.value)
        if token.kind == "op" and token.text == "(":
            node = self.binary(0)
            self.expect(")")
            return node
        if token.kind == "ident":
            return self.named(token.text)
        raise self.fail(f"unexpected {token.text or 'end of expression'!r}")

    def named(self, name: str) -> Node:
        """A keyword, a function call or a context."""
        if self.peek().kind == "op" and self.peek().text == "(":
            self.take()
            return Call(name.lower(), self.arguments())
        lowered = name.lower()
        if lowered in KEYWORDS:
            return Literal(KEYWORDS[lowered])
        if lowered == "nan":
            return Literal(float("nan"))
        if lowered == "infinity":
            return Literal(float("inf"))
        return Context(lowered)

    def arguments(self) -> tuple[Node, ...]:
        """Call arguments up to the closing parenthesis."""
        args: list[Node] = []
        if self.peek().kind == "op" and self.peek().text == ")":
            self.take()
            return ()
        while True:
            args.append(self.binary(0))
            token = self.take()
            if token.kind == "op" and token.text == ")":
                return tuple(args)
            if token.kind != "op" or token.text != ",":
                raise self.fail(f"expected ',' or ')' in a call, found {token.text!r}")

    def postfix(self, node: Node) -> Node:
        """Property, star and index accesses after a primary."""
        while self.peek().kind == "op" and self.peek().text in (".", "["):
            if self.take().text == ".":
                node = self.dotted(node)
                continue
            if self.peek().kind == "op" and self.peek().text == "*":
                self.take()
                node = Star(node)
            else:
                node = Index(node, self.binary(0))
            self.expect("]")
        return node

    def dotted(self, node: Node) -> Node:
        """What follows a `.`: a name or `*`."""
        token = self.take()
        if token.kind == "op" and token.text == "*":
            return Star(node)
        if token.kind == "ident":
            return Property(node, token.text)
        if token.kind == "number" and isinstance(token.value, int):
            return Property(node, token.text)
        raise self.fail(f"expected a property name after '.', found {token.text!r}")


def parse(source: str) -> Node:
    """Parse an expression (without its `${{ }}`) to a tree."""
    return Parser(source).parse()


def calls(node: Node) -> set[str]:
    """The names of every function the expression calls (lower case)."""
    match node:
        case Call():
            found = {node.name}
            for arg in node.args:
                found |= calls(arg)
            return found
        case Property() | Star():
            return calls(node.target)
        case Index():
            return calls(node.target) | calls(node.index)
        case Not():
            return calls(node.operand)
        case Binary():
            return calls(node.left) | calls(node.right)
        case _:
            return set()
