import pytest

from musicvae_lib import storage_url


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://ann:s3cr%40t@db-host:5433/musicvae", "postgresql://ann:***@db-host:5433/musicvae"),
        (
            "error: no grid study in 'postgres://ann:p@ss@db/x': run",
            "error: no grid study in 'postgres://ann:***@db/x': run",
        ),
        (
            "postgresql://db/x?sslmode=require&password=s3cret&user=ann",
            "postgresql://db/x?sslmode=require&password=***&user=ann",
        ),
        # nothing to mask
        ("postgresql://ann@db/x and sqlite:///run/study.db", "postgresql://ann@db/x and sqlite:///run/study.db"),
    ],
)
def test_mask_url_hides_every_password_in_a_text(text, masked):
    assert storage_url.mask_url(text) == masked


def test_a_url_is_split_from_its_password_and_postgres_is_postgresql():
    assert storage_url.split_password("postgresql://ann:s3cr%40t@db:5433/x") == ("postgresql://ann@db:5433/x", "s3cr@t")
    assert storage_url.split_password("postgresql://db/x?password=pw&sslmode=require") == (
        "postgresql://db/x?sslmode=require",
        "pw",
    )
    assert storage_url.split_password("postgresql://ann@db/x?sslmode=require") == (
        "postgresql://ann@db/x?sslmode=require",
        None,
    )
    assert storage_url.storage_url(" postgres://ann@db/x") == "postgresql://ann@db/x"
    assert storage_url.storage_url("postgres+psycopg://ann@db/x") == "postgresql+psycopg://ann@db/x"
    assert storage_url.storage_url("sqlite:///postgres://x") == "sqlite:///postgres://x"
