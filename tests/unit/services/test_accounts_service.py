"""``services.accounts.Accounts`` called directly: results, coded errors, no output."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from argon2 import PasswordHasher

import mailyard.services.accounts as accounts_module
from mailyard.config import Config
from mailyard.directory.sqlite import SqliteDirectory
from mailyard.services import errors
from mailyard.services.accounts import Accounts, PasswordRules
from mailyard.services.errors import Conflict, InvalidInput, NotFound, ServiceError

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def directory(tmp_path: Path) -> SqliteDirectory:
    config = Config(hostname="mx.example.test", data_dir=str(tmp_path),
                    local_domains=("example.test",))
    return SqliteDirectory(tmp_path / "directory.db", config, hasher=FAST)


@pytest.fixture
def accounts(tmp_path: Path, directory: SqliteDirectory) -> Accounts:
    return Accounts(directory, mail_root=tmp_path / "mail", hostname="mx.example.test",
                    passwords=PasswordRules(min_length=4))


def test_add_user_creates_the_row_and_the_mailbox(accounts: Accounts, tmp_path: Path,
                                                  directory: SqliteDirectory) -> None:
    added = accounts.add_user("Alice@Example.test", "s3cret pass")
    assert added.user.address == "alice@example.test" and added.user.scram
    assert added.mailbox == tmp_path / "mail" / "example.test" / "alice"
    assert added.mailbox_error is None and not added.scram_refused
    assert all((added.mailbox / sub).is_dir() for sub in ("cur", "new", "tmp"))
    assert directory.verify_password("alice@example.test", "s3cret pass")
    assert added.to_dict()["address"] == "alice@example.test"


def test_a_mailbox_that_cannot_be_made_is_reported_not_fatal(
        accounts: Accounts, tmp_path: Path, directory: SqliteDirectory) -> None:
    (tmp_path / "mail").write_text("not a directory")
    added = accounts.add_user("bob@example.test", "long enough")
    assert added.mailbox is None and added.mailbox_error
    assert [u.address for u in accounts.list_users()] == ["bob@example.test"]


@pytest.mark.parametrize(("password", "code"), [("", "password_empty"),
                                                ("abc", "password_too_short")])
def test_password_rules_are_checked_before_the_directory(
        accounts: Accounts, password: str, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        accounts.add_user("carol@example.test", password)
    assert info.value.code == code
    assert accounts.list_users() == []
    accounts.add_user("carol@example.test", "good one")
    with pytest.raises(InvalidInput) as info:
        accounts.change_password("carol@example.test", password)
    assert info.value.code == code


@pytest.mark.parametrize(("call", "code", "cls"), [
    (lambda a: a.add_user("x@nope.test", "long enough"), "domain_not_local", InvalidInput),
    (lambda a: a.add_user("not an address", "long enough"), "invalid_address", InvalidInput),
    (lambda a: a.add_user("a@example.test", "long enough"), "user_exists", Conflict),
    (lambda a: a.add_user("b@example.test", "line\nbreak"), "password_invalid", InvalidInput),
    (lambda a: a.change_password("zed@example.test", "long enough"), "no_such_user", NotFound),
    (lambda a: a.delete_user("zed@example.test"), "no_such_user", NotFound),
    (lambda a: a.add_domain("example.test"), "domain_in_config", Conflict),
    (lambda a: a.add_domain("bad_domain!"), "invalid_domain", InvalidInput),
    (lambda a: a.delete_domain("example.test"), "domain_in_config", Conflict),
    (lambda a: a.delete_domain("other.test"), "no_such_domain", NotFound),
    (lambda a: a.add_alias("team@example.test", []), "alias_without_target", InvalidInput),
    (lambda a: a.add_alias("team@example.test", ["@x.test"]), "invalid_target", InvalidInput),
    (lambda a: a.delete_alias("team@example.test"), "no_such_alias", NotFound),
    (lambda a: a.add_alias("a@example.test", ["x@remote.org"]), "alias_diverts_user",
     Conflict),
])
def test_refusals_carry_a_stable_code(accounts: Accounts, call, code: str,  # type: ignore[no-untyped-def]
                                      cls: type[ServiceError]) -> None:
    accounts.add_user("a@example.test", "long enough")
    with pytest.raises(cls) as info:
        call(accounts)
    assert info.value.code == code and errors.CODES[code] is cls
    assert str(info.value)  # a message for the operator


def test_domains(accounts: Accounts) -> None:
    assert accounts.add_domain("Other.TEST.").name == "other.test"
    with pytest.raises(Conflict) as info:
        accounts.add_domain("other.test")
    assert info.value.code == "domain_exists"
    assert [d.to_dict() for d in accounts.list_domains()] == [
        {"domain": "example.test", "config": True, "database": False},
        {"domain": "other.test", "config": False, "database": True},
    ]
    assert [d.source for d in accounts.list_domains()] == ["config", "database"]
    accounts.add_user("u@other.test", "long enough")
    accounts.add_alias("team@other.test", ["u@other.test"])
    with pytest.raises(Conflict) as info:
        accounts.delete_domain("other.test")
    assert info.value.code == "domain_not_empty"
    accounts.delete_user("u@other.test")
    accounts.delete_alias("team@other.test")
    assert accounts.delete_domain("OTHER.test") == "other.test"
    assert [d.name for d in accounts.list_domains()] == ["example.test"]


def test_delete_user_keeps_the_mailbox(accounts: Accounts) -> None:
    added = accounts.add_user("dan@example.test", "long enough")
    deleted = accounts.delete_user("Dan@example.test")
    assert deleted.address == "dan@example.test"
    assert deleted.kept_mailbox == added.mailbox and added.mailbox is not None
    assert added.mailbox.is_dir()
    assert accounts.list_users() == []


def test_delete_user_without_a_mailbox_on_disk(accounts: Accounts, tmp_path: Path) -> None:
    accounts.add_user("eve@example.test", "long enough")
    (tmp_path / "mail" / "example.test" / "eve").rename(tmp_path / "moved")
    assert accounts.delete_user("eve@example.test").kept_mailbox is None


def test_alias_on_a_user_is_refused_unless_forced(accounts: Accounts,
                                                  directory: SqliteDirectory) -> None:
    accounts.add_user("alice@example.test", "long enough")
    with pytest.raises(Conflict) as info:
        accounts.add_alias("Alice@example.test", ["boss@remote.org"])
    assert info.value.code == "alias_diverts_user" and "alice@example.test" in str(info.value)
    assert accounts.list_aliases() == []
    added = accounts.add_alias("alice@example.test", ["boss@remote.org"], force=True)
    assert added.copy_kept_for == "alice@example.test"
    assert added.alias.targets == ("alice@example.test", "boss@remote.org")
    assert directory.resolve("alice@example.test").mailboxes == ("alice@example.test",)
    # The copy is kept already: more targets need no force, and report no new copy.
    assert accounts.add_alias("alice@example.test", ["x@remote.org"]).copy_kept_for is None
    # Naming the user among the targets is explicit enough.
    accounts.add_user("bob@example.test", "long enough")
    added = accounts.add_alias("bob@example.test", ["bob@example.test", "y@remote.org"])
    assert added.copy_kept_for is None


def test_aliases_list_and_delete(accounts: Accounts) -> None:
    accounts.add_alias("team@example.test", ["a@remote.org", "B@remote.org"])
    accounts.add_alias("@example.test", ["@elsewhere.test"])
    assert {a.address: a.to_dict()["targets"] for a in accounts.list_aliases()} == {
        "team@example.test": ["a@remote.org", "B@remote.org"],
        "@example.test": ["@elsewhere.test"],
    }
    with pytest.raises(NotFound) as info:
        accounts.delete_alias("team@example.test", ["c@remote.org"])
    assert info.value.code == "no_such_target"
    assert accounts.delete_alias("TEAM@example.test", ["b@remote.org"]) == "team@example.test"
    assert accounts.list_aliases("example.test")[1].targets == ("a@remote.org",)


def test_every_code_raised_in_the_directory_and_services_is_declared() -> None:
    """A code the CODES table does not know would reach clients as a storage failure."""
    src = Path(accounts_module.__file__).parents[1]
    found = set()
    for path in [*(src / "directory").glob("*.py"), *(src / "services").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "code" \
                    and isinstance(node.value, ast.Constant):
                found.add(node.value.value)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "error" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
    assert found and found <= set(errors.CODES), found - set(errors.CODES)


def test_unknown_directory_code_becomes_a_storage_failure() -> None:
    from mailyard.directory.api import DirectoryError

    err = errors.from_directory(DirectoryError("disk on fire", code="something_new"))
    assert isinstance(err, errors.StorageFailure) and err.code == "directory_error"
    assert str(err) == "disk on fire"


def test_quota_joins_the_directory_limits_and_the_mailbox_usage(accounts: Accounts,
                                                                tmp_path: Path) -> None:
    from mailyard.store.maildir import Maildir
    from mailyard.store.quota import KEEP, QuotaUsage

    accounts.add_user("alice@example.test", "long enough")
    Maildir(tmp_path / "mail" / "example.test" / "alice").deliver([b"Subject: x\r\n\r\nhi\r\n"])
    quota = accounts.quota("alice@example.test")
    assert quota.usage == QuotaUsage(18, 1)
    assert (quota.storage_limit, quota.storage_source) == (None, "default")
    quota = accounts.set_quota("alice@example.test", storage_bytes=1000, messages=KEEP)
    assert (quota.storage_limit, quota.storage_source) == (1000, "user")
    assert (quota.messages_limit, quota.messages_source) == (None, "default")
    assert quota.to_dict()["storage"] == {"usage": 18, "limit": 1000, "source": "user"}
    with pytest.raises(InvalidInput) as info:
        accounts.set_quota("alice@example.test", messages=-1)
    assert info.value.code == "invalid_quota"
    with pytest.raises(NotFound):
        accounts.quota("nobody@example.test")
