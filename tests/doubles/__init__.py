"""Stand-ins for libraries whose real behaviour needs hardware this machine does not have."""
