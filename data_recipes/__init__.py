"""Sample recipes and data; shipped inside the package so that `hybridft demo` runs anywhere."""
