pub mod classification;
