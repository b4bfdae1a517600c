#!/bin/sh
# make_ca.sh DIR - a throwaway certificate authority and a server certificate
# for 127.0.0.1 / localhost, for the SMTP sandbox's STARTTLS.
#
# Writes DIR/ca.pem (trust this: SMTP_CA_FILE), DIR/ca.key, DIR/server.pem
# (the server's chain: its certificate then the CA's) and DIR/server.key.
# Clients keep certificate and host-name verification on; that is the point
# of making a CA instead of a self-signed server certificate.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"
umask 077

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 \
    -keyout ca.key -out ca.pem -subj "/CN=CRM SMTP sandbox test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

openssl req -newkey rsa:2048 -nodes -sha256 \
    -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null

cat > server.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out server.crt -days 30 -sha256 -extfile server.ext 2>/dev/null
cat server.crt ca.pem > server.pem
rm -f server.csr server.ext server.crt ca.srl
chmod 644 ca.pem server.pem
echo "$dir/ca.pem"
