"""mixrepro's shared training core (see README.md, "Architecture")."""
