"""One redaction for everything healer prints, records or sends: no secret is ever shown.

- A URL keeps no password (``redis://user:***@broker:6379/0``), and a query parameter whose
  name contains pass, pwd, secret, token, key, auth, sig or cred (in any case) keeps no value
  (``?password=***``).
- An http(s) URL is a webhook (healer calls no other web address), and its path and query may
  hold a token: it shows as scheme, host and port only, ``https://hooks.slack.com/…``.
- The configuration's secrets (the broker URL's password and secret query values, the webhook
  URL with its path and query, the routing key) are replaced wherever they appear, also where
  no pattern sees them. Only those of at least ``MIN_SECRET`` characters: a shorter one would
  mangle ordinary text (a password "ab" would hide every "ab"), so the patterns alone cover it.

``Redactor()`` knows the patterns only, for what is said before a configuration is loaded;
``compose.redactor(config)`` also knows the configuration's secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast
from urllib.parse import unquote

if TYPE_CHECKING:
    from collections.abc import Iterable

MASK = "***"
MIN_SECRET = 4
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")
_PUNCTUATION = ".,;:!?)]}"  # after a URL in a sentence, not part of it
_NETLOC_END = re.compile(r"[/?#]")
_PARAM = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred", re.IGNORECASE)
_T = TypeVar("_T")


def _parts(link: str) -> tuple[str, str, str, str]:
    """Scheme with its ``://``, userinfo, host (and port), and the rest (path, query, fragment).

    Without ``://`` (``unix:/run/redis.sock``) all of it is the rest.
    """
    scheme, sep, rest = link.partition("://")
    if not sep:
        return "", "", "", link
    end = match.start() if (match := _NETLOC_END.search(rest)) else len(rest)
    userinfo, _, host = rest[:end].rpartition("@")
    return scheme + sep, userinfo, host, rest[end:]


def _webhook(scheme: str) -> bool:
    return scheme.lower() in {"http://", "https://"}


def url(link: str) -> str:
    """A URL as healer shows it: a webhook's scheme and host, any other without its secrets."""
    scheme, userinfo, host, rest = _parts(link)
    if _webhook(scheme):
        return f"{scheme}{host}" + ("/…" if rest.strip("/") else "")
    user, colon, _ = userinfo.partition(":")
    login = f"{user}:{MASK}@" if colon else f"{userinfo}@" if userinfo else ""
    rest = _PARAM.sub(lambda m: f"{m[1]}{m[2]}={MASK}" if _SECRET_NAME.search(unquote(m[2]))
                      else m[0], rest)
    return f"{scheme}{login}{host}{rest}"


def _secrets(link: str) -> set[str]:
    """What a URL holds that no one may see, as written and percent-decoded."""
    scheme, userinfo, _, rest = _parts(link)
    found = {userinfo.partition(":")[2]}
    found |= {m[3] for m in _PARAM.finditer(rest) if _SECRET_NAME.search(unquote(m[2]))}
    if _webhook(scheme):
        found |= {rest, rest.partition("?")[2]}
    return found | {unquote(s) for s in found}


def _url_in_text(match: re.Match[str]) -> str:
    link = match[0].rstrip(_PUNCTUATION)
    return url(link) + match[0][len(link):]


@dataclass(frozen=True)
class Redactor:
    """Redacts text and JSON values: the patterns, and the secrets it was told about."""

    known: tuple[tuple[str, str], ...] = ()  # (secret, what is shown instead), longest first

    @classmethod
    def knowing(cls, urls: Iterable[str | None] = (), secrets: Iterable[str | None] = ()
                ) -> Redactor:
        """A redactor that also hides these URLs' secrets and these secret values."""
        shown: dict[str, str] = {}
        for link in filter(None, urls):
            shown |= dict.fromkeys(_secrets(link), MASK)
            shown[link] = url(link)
        shown |= dict.fromkeys(filter(None, secrets), MASK)
        return cls(tuple(sorted(((s, r) for s, r in shown.items() if len(s) >= MIN_SECRET),
                                key=lambda pair: -len(pair[0]))))

    def text(self, said: str) -> str:
        """The text with every known secret replaced and every URL shown as ``url`` shows it."""
        for secret, shown in self.known:
            said = said.replace(secret, shown)
        return _URL.sub(_url_in_text, said)

    def value(self, obj: _T) -> _T:
        """A copy of a JSON value with every string in it redacted (dict keys are kept)."""
        if isinstance(obj, str):
            said = self.text(obj)
            return obj if said == obj else cast("_T", said)
        if isinstance(obj, dict):
            return cast("_T", {k: self.value(v) for k, v in obj.items()})
        if isinstance(obj, (list, tuple)):
            return cast("_T", type(obj)(self.value(v) for v in obj))
        return obj
