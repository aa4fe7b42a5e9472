//! Runnable programs a newcomer starts from; each lives in `src/bin/`.
