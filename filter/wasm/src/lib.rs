//! hubgate filter
