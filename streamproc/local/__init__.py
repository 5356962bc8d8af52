"""The local stack ``streamproc up`` runs (the embedded Tansu broker, moto's S3 server, the
edge and a worker as child processes, the demo), and Apache Kafka from its Maven jars for
the tests and the bench. Production deployments use none of it."""
