"""Kubernetes' own rules for names, label keys and values, paths and quantities.

A value that breaks one of them is accepted by a loose schema and fails much later, when the
operator creates the RayJob or when a pod starts. Each rule here is a constrained string type:
pydantic checks it when the job or the operator reads a spec, and its pattern (with its length
bound) goes into the CRD, so the apiserver refuses the same values at ``kubectl apply``.

Patterns are written without backslashes (``[.]`` for a dot) so that the same text works in
Python, in OpenAPI ``pattern`` and inside a CEL string literal.
"""

from __future__ import annotations

import posixpath
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic.config import JsonDict

_DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = f"{_DNS_LABEL}([.]{_DNS_LABEL})*"
_NAME_PART = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"

#: A DNS-1123 label: volume names, EmbeddingJob names.
DNS_LABEL = re.compile(f"^{_DNS_LABEL}$")
#: A DNS-1123 subdomain: Secret, ServiceAccount and PersistentVolumeClaim names.
DNS_SUBDOMAIN = re.compile(f"^{_DNS_SUBDOMAIN}$")
#: A label key, taint key or extended resource name: ``[prefix/]name``.
QUALIFIED_NAME = re.compile(f"^({_DNS_SUBDOMAIN}/)?{_NAME_PART}$")
#: An extended resource name (``nvidia.com/gpu``): a qualified name with its domain.
EXTENDED_RESOURCE = re.compile(f"^{_DNS_SUBDOMAIN}/{_NAME_PART}$")
#: A label value (may be empty).
LABEL_VALUE = re.compile(f"^({_NAME_PART})?$")
#: A non-negative resource quantity: ``500m``, ``2``, ``1.5Gi``, ``1e3``.
QUANTITY = re.compile(
    "^[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
#: An absolute path.
ABSOLUTE_PATH = re.compile("^/.*$")

MAX_QUALIFIED_NAME = 253 + 1 + 63
#: A path (Linux's PATH_MAX) and a URI (twice what object stores allow for a key). With every
#: other bound of the spec, the job's whole config stays well below the 128 KiB that Linux
#: allows one command-line argument (tests/unit/test_spec_rules.py builds the largest one).
MAX_PATH = 4096
MAX_URI = 2048
MAX_LABELS = 64


def _matching(pattern: re.Pattern[str], what: str, max_length: int) -> AfterValidator:
    """A check with a message people can read (the CRD gets the pattern itself)."""

    def check(value: str) -> str:
        # fullmatch: '$' alone would let a trailing newline through (the apiserver's RE2 not).
        if len(value) > max_length or not pattern.fullmatch(value):
            raise ValueError(f"{value[:80]!r} is not {what}")
        return value

    return AfterValidator(check)


def _qualified(value: str) -> str:
    prefix, _, name = value.rpartition("/")
    if len(prefix) > 253 or len(name) > 63:
        raise ValueError(f"{value!r}: the prefix may have 253 characters and the name 63")
    return value


def _schema(pattern: re.Pattern[str], max_length: int, **extra: Any) -> JsonDict:
    return {"pattern": pattern.pattern, "maxLength": max_length, **extra}


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": "1e-9", "u": "1e-6", "m": "1e-3", "k": "1e3", "M": "1e6", "G": "1e9"}
_DECIMAL |= {"T": "1e12", "P": "1e15", "E": "1e18"}


def quantity_value(text: str) -> Decimal:
    """The number a quantity stands for (``500m`` → 0.5); ValueError if it is not one."""
    if not QUANTITY.fullmatch(text):
        raise ValueError(f"{text!r} is not a quantity (e.g. 500m, 2, 1.5Gi)")
    number = text.lstrip("+")
    for suffix, factor in _BINARY.items():
        if number.endswith(suffix):
            return Decimal(number.removesuffix(suffix)) * factor
    if number[-1:] in _DECIMAL:
        return Decimal(number[:-1]) * Decimal(_DECIMAL[number[-1]])
    try:
        return Decimal(number)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers here
        raise ValueError(f"{text!r} is not a quantity") from None


def _positive_quantity(value: str) -> str:
    if quantity_value(value) <= 0:  # the pattern admits no sign: only zero is left to refuse
        raise ValueError(f"{value!r}: must be more than zero")
    return value


def _cel(rule: str, message: str) -> JsonDict:
    return {"x-kubernetes-validations": [{"rule": rule, "message": message}]}


_LABEL_KEY = "a label key ([prefix/]name: a DNS subdomain, '/', up to 63 letters, digits, -_.)"

#: CPU or memory of a pod: a quantity above zero.
PositiveQuantity = Annotated[
    str,
    Field(
        json_schema_extra=_schema(
            QUANTITY,
            64,
            **_cel("quantity(self).isGreaterThan(quantity('0'))", "must be a quantity above zero"),
        ),
    ),
    _matching(QUANTITY, "a quantity (e.g. 500m, 2, 1.5Gi)", 64),
    AfterValidator(_positive_quantity),
]
DnsSubdomain = Annotated[
    str,
    Field(min_length=1, json_schema_extra=_schema(DNS_SUBDOMAIN, 253)),
    _matching(DNS_SUBDOMAIN, "a DNS subdomain name (lowercase letters, digits, '-', '.')", 253),
]
QualifiedName = Annotated[
    str,
    Field(min_length=1, json_schema_extra=_schema(QUALIFIED_NAME, MAX_QUALIFIED_NAME)),
    _matching(QUALIFIED_NAME, _LABEL_KEY, MAX_QUALIFIED_NAME),
    AfterValidator(_qualified),
]
ExtendedResource = Annotated[
    str,
    Field(min_length=1, json_schema_extra=_schema(EXTENDED_RESOURCE, MAX_QUALIFIED_NAME)),
    _matching(
        EXTENDED_RESOURCE,
        "an extended resource name (domain/name, e.g. nvidia.com/gpu)",
        MAX_QUALIFIED_NAME,
    ),
    AfterValidator(_qualified),
]
LabelValue = Annotated[
    str,
    Field(json_schema_extra=_schema(LABEL_VALUE, 63)),
    _matching(LABEL_VALUE, "a label value (up to 63 letters, digits, '-', '_', '.')", 63),
]


def _normal_path(path: str) -> str:
    """One spelling per path ('/tmp/', '//tmp' and '/tmp/.' are '/tmp'), so that paths
    compared (a reserved mountPath, two mounts at one place) are compared as the kernel sees
    them."""
    return posixpath.normpath("/" + path.lstrip("/"))


AbsolutePath = Annotated[
    str,
    Field(min_length=1, json_schema_extra=_schema(ABSOLUTE_PATH, MAX_PATH)),
    _matching(ABSOLUTE_PATH, f"an absolute path of at most {MAX_PATH} characters", MAX_PATH),
    AfterValidator(_normal_path),
]


def label_map_schema() -> JsonDict:
    """CRD rules for a map of labels: each key a qualified name (values carry their own)."""
    return {
        "maxProperties": MAX_LABELS,
        **_cel(
            f"self.all(k, k.size() <= {MAX_QUALIFIED_NAME} "
            f"&& k.matches('{QUALIFIED_NAME.pattern}'))",
            "label keys must be [prefix/]name: a DNS subdomain prefix and a name of at most 63 "
            "letters, digits, '-', '_' or '.'",
        ),
    }
