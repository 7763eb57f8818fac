"""The errors a service raises: one small family, each with a stable ``code``.

The message is for a person (the CLI prints it as is); the ``code`` is for a program.
The HTTP API turns the class into a status and the code into an RFC 9457 problem
``type``, so a code, once published, keeps its meaning.  ``CODES`` lists every code
a service may raise, with its class: a code not in it is a bug (a test checks).
"""

from __future__ import annotations

from mailyard.directory.api import DirectoryError


class ServiceError(Exception):
    """An operation was refused or failed.  ``code`` is stable; ``str(error)`` is the
    message for the operator."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(ServiceError):
    """The request itself is wrong (a bad address, a short password): asking again
    the same way fails again."""


class NotFound(ServiceError):
    """The thing the request names does not exist."""


class Conflict(ServiceError):
    """The request clashes with the current state (exists already, still in use)."""


class Expired(ServiceError):
    """The thing the request names existed but its time is over (a link)."""


class Forbidden(ServiceError):
    """The caller may not do this (an API key sending as someone it may not)."""


class TooLarge(ServiceError):
    """The input is over a size limit."""


class StorageFailure(ServiceError):
    """The storage behind the service failed (database error, disk trouble)."""


CODES: dict[str, type[ServiceError]] = {
    # domains
    "invalid_domain": InvalidInput,
    "domain_exists": Conflict,
    "domain_in_config": Conflict,
    "domain_not_empty": Conflict,
    "domain_not_local": InvalidInput,
    "no_such_domain": NotFound,
    # users and passwords
    "invalid_address": InvalidInput,
    "user_exists": Conflict,
    "no_such_user": NotFound,
    "password_empty": InvalidInput,
    "password_too_short": InvalidInput,
    "password_invalid": InvalidInput,
    "invalid_quota": InvalidInput,
    # aliases
    "alias_without_target": InvalidInput,
    "invalid_target": InvalidInput,
    "alias_diverts_user": Conflict,
    "no_such_alias": NotFound,
    "no_such_target": NotFound,
    # DKIM keys
    "invalid_algorithm": InvalidInput,
    "no_pending_key": Conflict,
    "dkim_key_error": StorageFailure,
    # mailboxes
    "mailbox_error": StorageFailure,
    # sending limits
    "invalid_limit": InvalidInput,
    "storage_failed": StorageFailure,
    # anything the directory reports without a code of its own
    "directory_error": StorageFailure,
    # API keys
    "invalid_scope": InvalidInput,
    "invalid_name": InvalidInput,
    "apikey_exists": Conflict,
    "no_such_apikey": NotFound,
    "no_such_pool": InvalidInput,
    "invalid_sender": InvalidInput,
    # contacts, lists, memberships, suppression
    "invalid_contact": InvalidInput,
    "invalid_list": InvalidInput,
    "invalid_import": InvalidInput,
    "contact_exists": Conflict,
    "list_exists": Conflict,
    "no_such_contact": NotFound,
    "no_such_list": NotFound,
    "no_such_membership": NotFound,
    "no_such_suppression": NotFound,
    "no_such_token": NotFound,
    "token_expired": Expired,
    "import_too_large": TooLarge,
    "contacts_error": StorageFailure,
    "invalid_ttl": InvalidInput,
    # campaigns
    "invalid_campaign": InvalidInput,
    "invalid_template": InvalidInput,
    "invalid_schedule": InvalidInput,
    "render_failed": InvalidInput,
    "campaign_check_failed": InvalidInput,
    "campaign_exists": Conflict,
    "campaign_state": Conflict,
    "no_such_campaign": NotFound,
    # transactional messages
    "invalid_idempotency_key": InvalidInput,
    "idempotency_key_reused": InvalidInput,
    "idempotency_in_progress": Conflict,
    "sender_not_allowed": Forbidden,
    "too_many_recipients": InvalidInput,
    "recipients_suppressed": InvalidInput,
    "no_such_template": NotFound,
    "template_failed": InvalidInput,
    "invalid_header": InvalidInput,
    "over_sending_limit": InvalidInput,
    "message_too_big": TooLarge,
    "mail_not_queued": StorageFailure,
}


def error(code: str, message: str) -> ServiceError:
    """The error of class ``CODES[code]``; an unknown code is a programming error."""
    return CODES[code](code, message)


def from_directory(exc: DirectoryError) -> ServiceError:
    """The service error for a directory's refusal (same message, same code)."""
    cls = CODES.get(exc.code, StorageFailure)
    return cls(exc.code if exc.code in CODES else "directory_error", str(exc))
