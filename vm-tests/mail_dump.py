"""Print the mails the sink received, decoded; or, with --expect, exit 0 only if one
mail mentions the event type (and the member name, if given)."""

import argparse
import email
import email.policy
import mailbox
import sys


def texts(maildir):
    for msg in mailbox.Maildir(maildir, factory=None, create=False):
        parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
        parts = [f"Subject: {parsed['subject']}", f"To: {parsed['to']}"]
        for part in parsed.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
        yield "\n".join(parts)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--maildir", default="/var/lib/mail-sink")
    p.add_argument("--expect", nargs="+", metavar=("EVENT", "MEMBER"))
    args = p.parse_args()
    mails = list(texts(args.maildir))
    if not args.expect:
        print("\n\n".join(mails))
        return 0
    hit = [m for m in mails if all(word in m for word in args.expect)]
    print(f"{len(hit)} of {len(mails)} mails mention {args.expect}")
    return 0 if hit else 1


if __name__ == "__main__":
    sys.exit(main())
