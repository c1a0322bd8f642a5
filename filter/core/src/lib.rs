//! hubgate core
