#!/usr/bin/env python3
"""Signs webhook requests the way Twilio and Meta do, for the receiver's tests.

Written from the providers' documentation with Python's own hmac, hashlib
and base64, so the tests never check the receiver's signatures with the
receiver's code.

  webhook_sign.py twilio TOKEN URL [FORM_BODY]
      X-Twilio-Signature: base64(HMAC-SHA1(TOKEN, URL + each name+value of the
      decoded form, sorted by name then value)).
  webhook_sign.py twilio-json TOKEN URL BODY
      The bodySHA256 variant: prints "<url with bodySHA256=hex> <signature>",
      the signature covering that URL alone.
  webhook_sign.py sha256 BODY
      Lower-case hex SHA-256 of BODY.
  webhook_sign.py meta SECRET BODY
      X-Hub-Signature-256: "sha256=" + hex(HMAC-SHA256(SECRET, BODY)).
"""
import base64
import hashlib
import hmac
import sys
import urllib.parse


def twilio(token, url, params):
    data = url
    for name, value in sorted(set(params)):
        data += name + value
    mac = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def main(argv):
    if len(argv) >= 3 and argv[0] == "twilio":
        form = argv[3] if len(argv) > 3 else ""
        params = urllib.parse.parse_qsl(form, keep_blank_values=True)
        print(twilio(argv[1], argv[2], params))
    elif len(argv) == 4 and argv[0] == "twilio-json":
        digest = hashlib.sha256(argv[3].encode()).hexdigest()
        sep = "&" if "?" in argv[2] else "?"
        url = argv[2] + sep + "bodySHA256=" + digest
        print(url, twilio(argv[1], url, []))
    elif len(argv) == 2 and argv[0] == "sha256":
        print(hashlib.sha256(argv[1].encode()).hexdigest())
    elif len(argv) == 3 and argv[0] == "meta":
        mac = hmac.new(argv[1].encode(), argv[2].encode(), hashlib.sha256).hexdigest()
        print("sha256=" + mac)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
