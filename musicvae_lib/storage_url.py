"""Storage URLs as a user writes them and as they may be shown: the password masked, ``postgres://`` understood.

Plain string work with no database driver, so that the runner and the report can mask a URL without loading
Optuna or SQLAlchemy (``shared_study`` opens the storages).
"""

from __future__ import annotations

import re
import urllib.parse

# user:password@ in a URL, and a password=... query parameter (libpq takes both); greedy up to the last @ of the word
URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][\w+.-]*://[^/\s:@]*):(?P<password>\S*)@")
QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&\s]*)", re.IGNORECASE)


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``: ``postgresql://user:***@host/db``."""
    return QUERY_PASSWORD.sub(r"\g<head>***", URL_PASSWORD.sub(r"\g<head>:***@", text))


def storage_url(url: str) -> str:
    """``url`` with the scheme SQLAlchemy knows: Heroku's and libpq's ``postgres://`` is ``postgresql://``
    (psycopg 3)."""
    return re.sub(r"^postgres(?=[+:])", "postgresql", url.strip())


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password (in the user part or a ``password=`` query parameter),
    and that password (None if none)."""
    password = None
    if (match := URL_PASSWORD.match(url)) is not None:
        password = urllib.parse.unquote(match["password"])
        url = f"{match['head']}@{url[match.end() :]}"
    if (match := QUERY_PASSWORD.search(url)) is not None:
        password = password or urllib.parse.unquote(match["password"])
        url = re.sub(r"[?&]$", "", url[: match.start() + 1] + url[match.end() + 1 :])
    return url, password
