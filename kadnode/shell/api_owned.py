"""The control API's owned values: shared (vector clocks) and signed (BEP 44)
values, each operation declared once (kadnode.shell.operations says how).
No I/O.
"""

from __future__ import annotations

from kadnode.shell import examples as ex
from kadnode.shell import messages
from kadnode.shell.operations import (
    CAS,
    CONTEXT,
    KEY,
    NOT_FOUND_IS_404,
    PUBLIC_KEY,
    SALT,
    Operation,
    Reply,
)

OWNED: tuple[Operation, ...] = (
    Operation(
        "put_shared",
        "PUT",
        "/shared/{key}",
        "Write a shared (multi-writer) value",
        (
            Reply(
                "how many of the k closest acknowledged the write",
                {"key": "greeting", **ex.STORED, "elapsed_ms": 48.9},
            ),
        ),
        messages.Written,
        "A vector-clocked write (Dynamo, DeCandia et al. 2007, section 4.4). Without a context"
        " it is a blind write and becomes a sibling of any concurrent value; with the context a"
        " GET /shared/{key} returned it supersedes every sibling that read saw."
        f" {ex.BELOW_QUORUM}",
        params=(KEY,),
        body=messages.SharedPutBody,
        command="put",
        variant="shared",
    ),
    Operation(
        "get_shared",
        "GET",
        "/shared/{key}",
        "Read a shared value: every concurrent sibling",
        (
            Reply(
                "the siblings; pass context back with the next write to resolve them",
                {
                    "key": "greeting",
                    "found": True,
                    "deleted": False,
                    "siblings": ex.SIBLINGS,
                    "context": ex.CONTEXT,
                    **ex.READ,
                    "elapsed_ms": 41.0,
                },
            ),
            Reply(
                "no replica holds a value for this key, or every version is a delete (deleted)",
                {
                    "key": "greeting",
                    "found": False,
                    "deleted": False,
                    "siblings": [],
                    "context": None,
                    **ex.UNREAD,
                },
                404,
            ),
        ),
        messages.Shared,
        "A quorum read: the siblings every answering replica holds, reconciled; replicas"
        " missing some are repaired (repaired counts them). Deletes (tombstones) are not"
        " listed, but their clocks are in context: a write naming it supersedes them.",
        params=(KEY,),
        command="get",
        variant="shared",
        **NOT_FOUND_IS_404,
    ),
    Operation(
        "delete_shared",
        "DELETE",
        "/shared/{key}",
        "Delete a shared value: a tombstone superseding what a read saw",
        (
            Reply(
                "how many of the k closest acknowledged the delete",
                {"key": "greeting", **ex.STORED, "elapsed_ms": 52.0},
            ),
        ),
        messages.Written,
        "A write whose value is nil, with a causal context (Dynamo's delete): it supersedes"
        " every version the context has seen, wherever versions meet (a write, read repair,"
        " anti-entropy, a hand-off), and a write concurrent with it survives as a sibling. Its"
        " writer republishes it as it would a value. Without a context, the context of a quorum"
        f" read just before; 400 when that read finds nothing. {ex.BELOW_QUORUM}",
        params=(KEY,),
        query=(CONTEXT,),
        command="delete",
        variant="shared",
    ),
    Operation(
        "put_signed",
        "PUT",
        "/signed",
        "Write the next version of this node's signed value (takes VALUE, no key)",
        (
            Reply(
                "how many of the k closest acknowledged the version, and which it is",
                {
                    "key": ex.TARGET,
                    **ex.STORED,
                    "elapsed_ms": 95.1,
                    "public_key": ex.RECORD["public_key"],
                    "salt": "profile",
                    "seq": 4,
                },
            ),
        ),
        messages.SignedWritten,
        "A signed mutable value (BEP 44's model): stored under SHA-1(tag + public key +"
        " salt), signed by this node's ed25519 key with a sequence one past the newest a quorum"
        " read finds; replicas keep the highest valid sequence and refuse older ones, so only"
        " this node can change it. cas makes it a compare-and-swap: 409 when the newest version"
        " is not at that sequence, cas 0 when any version is held (checked by a read just"
        " before the write)."
        f" {ex.BELOW_QUORUM}",
        body=messages.SignedPutBody,
        command="put",
        variant="signed",
    ),
    Operation(
        "get_signed",
        "GET",
        "/signed/{public_key}",
        "Read a signed value: KEY is its owner's public key (64 hex digits)",
        (
            Reply(
                "the newest valid version the replicas hold",
                {
                    "key": ex.TARGET,
                    "public_key": ex.RECORD["public_key"],
                    "salt": "profile",
                    "found": True,
                    "deleted": False,
                    "value": "hello",
                    "seq": 4,
                    **ex.READ,
                    "elapsed_ms": 40.2,
                },
            ),
            Reply(
                "no replica holds a valid version, or the newest is a delete (deleted, seq)",
                {
                    "key": ex.TARGET,
                    "public_key": ex.RECORD["public_key"],
                    "salt": "profile",
                    "found": False,
                    "deleted": True,
                    "value": None,
                    "seq": 5,
                    **ex.UNREAD,
                },
                404,
            ),
        ),
        messages.SignedFound,
        "A quorum read of the value stored under SHA-1(tag + public key + salt): versions whose"
        " signature fails are counted in rejected and never returned, replicas holding an older"
        " sequence or none are repaired.",
        params=(PUBLIC_KEY,),
        query=(SALT,),
        command="get",
        variant="signed",
        **NOT_FOUND_IS_404,
    ),
    Operation(
        "delete_signed",
        "DELETE",
        "/signed",
        "Delete this node's signed value: a signed tombstone (takes no key)",
        (
            Reply(
                "how many of the k closest acknowledged the delete, and its version",
                {
                    "key": ex.TARGET,
                    **ex.STORED,
                    "elapsed_ms": 91.7,
                    "public_key": ex.RECORD["public_key"],
                    "salt": "profile",
                    "seq": 5,
                },
            ),
        ),
        messages.SignedWritten,
        "A new version whose value is nil, signed like any other and one past the newest a"
        " quorum read finds: it beats every older version wherever versions meet (a write, read"
        " repair, anti-entropy, a hand-off), and this node republishes it as it would the value."
        f" {ex.BELOW_QUORUM}",
        query=(SALT, CAS),
        command="delete",
        variant="signed",
    ),
)
