"""vid2vid: the sequential video generator (conditioning and previous-frame encoders), its
image, mouth and multi-scale dynamics discriminators and losses. Built in a later issue; the
package exists so that the layout and imports are stable from the start."""
