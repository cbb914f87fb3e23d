//! Firmware for the lane I/O board (being written).
#![no_std]
