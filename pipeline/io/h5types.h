/* h5types.h: the HDF5 type of each qs_h5_type, shared by the serial store (io/h5store.c)
 * and the parallel writer (mpi/h5par.c) so both write the same on-disk types. Internal to
 * the HDF5 code: it needs <hdf5.h>, which io/h5store.h keeps out of its users' way.
 */
#ifndef QS_H5TYPES_H
#define QS_H5TYPES_H

#include <hdf5.h>

#include "h5store.h"

/* Native in-memory type of t. */
hid_t qs_h5_mem_type(qs_h5_type t);
/* On-disk type of t: explicit little-endian, so files do not depend on the host. */
hid_t qs_h5_file_type(qs_h5_type t);

#endif /* QS_H5TYPES_H */
