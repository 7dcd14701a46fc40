#!/bin/sh
# Throw-away secrets for the secure three-node cluster (configs/secure/):
# a CA, one server certificate the three nodes share (also their client
# certificate towards each other), a certificate for the MQTT broker, the
# broker's password file, the nodes' password and the cluster key.
#
#   configs/secure/make-certs.sh [output directory]
#
# The default output directory is configs/secure/generated (git-ignored),
# which is where node1..3.toml and mosquitto.conf look. Certificates are
# for 127.0.0.1 and localhost and expire after 30 days. Needs openssl and
# mosquitto_passwd. For testing only: a real deployment keeps its CA key
# offline and gives every node its own certificate.
set -eu

out=${1:-$(dirname "$0")/generated}
mkdir -p "$out"
cd "$out"
umask 077

# A P-256 key and certificate signing request: <name>.key, <name>.csr.
request() {
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
}

# <name>.pem signed by the CA, with the extensions in <name>.ext.
sign() {
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "$2" \
        -days 30 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 30 -subj "/CN=merklekv throw-away CA" \
    -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout ca.key -out ca.pem 2>/dev/null

# The nodes: serverAuth for clients, clientAuth for anti-entropy to peers.
request node "merklekv node"
printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature \
    extendedKeyUsage=serverAuth,clientAuth \
    subjectAltName=IP:127.0.0.1,DNS:localhost > node.ext
sign node 1

# The broker.
request broker "mosquitto"
printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature \
    extendedKeyUsage=serverAuth subjectAltName=IP:127.0.0.1,DNS:localhost > broker.ext
sign broker 2

# Secrets: random, one per file, first line.
openssl rand -hex 16 > requirepass       # password of the nodes' user "default"
openssl rand -hex 32 > cluster.key       # signs replication batches and presence
openssl rand -hex 16 > mqtt-password     # the nodes' password on the broker

# The broker's password file: user "merklekv".
mosquitto_passwd -c -b mosquitto.passwd merklekv "$(cat mqtt-password)"

# Readable by the user who runs the nodes and the broker.
chmod 600 ./*.key requirepass cluster.key mqtt-password mosquitto.passwd
chmod 644 ca.pem node.pem broker.pem
echo "wrote $(pwd): ca.pem node.pem/.key broker.pem/.key mosquitto.passwd requirepass cluster.key mqtt-password"
