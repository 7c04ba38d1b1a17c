use crate::support::value; #[allow(unused_imports)] use value as _;
