//! Data sets: LIBSVM reading and sharding, synthetic generators, converters.
