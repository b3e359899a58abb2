"""What the tests, fixtures/ and bench/ build images and servers with: image and layer builders,
the registry servers and fault proxy, database writers, the fuzzing bounds."""
